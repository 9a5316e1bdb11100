//! The checks the fuzz targets run. They live in files of their own so
//! that the corpus replay tests of cairn-format and cairn-index
//! (`crates/*/tests/fuzz_corpus.rs`) include the very same code.

#[path = "../checks_format.rs"]
pub mod checks_format;

#[path = "../checks_index.rs"]
pub mod checks_index;
