//! stask host library.
