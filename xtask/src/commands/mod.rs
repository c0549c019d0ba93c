//! The commands, one module each with one entry point, `run`, taking the command's flags. They
//! sit on top of everything else; `repro`'s pipeline is reused by `matrix`.

pub mod bench;
pub mod bisect;
pub mod blocks_generate;
pub mod compare;
pub mod diff;
pub mod doctor;
pub mod k8s;
pub mod matrix;
pub mod repro;
pub mod rpc_stand_in;
pub mod sweep;
pub mod test_suite;
pub mod tidy;
