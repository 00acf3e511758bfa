//! The `schild` command line as an operator uses it.
