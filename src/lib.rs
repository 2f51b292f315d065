//! lake: a lakehouse table-format engine, on-disk compatible with Apache Hudi. This crate is the
//! `lake` binary's library: one module per subcommand under [`cli`].

pub mod cli;
