//! Command-line entry point: parses arguments and hands off to the library.

fn main() {}
