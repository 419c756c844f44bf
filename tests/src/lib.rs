//! Test support for flush-tests.
