//! The real pipeline: `cargo xtask …` with real Docker on this machine. These tests need a Docker
//! engine (CI starts one); without it they fail, they are never skipped.

mod action;
mod adversaries;
mod bench;
mod breaking_point;
mod compare;
mod docs;
mod doctor;
mod field_to_lab;
mod house;
mod k8s;
mod local_backend;
mod metashrew_engine;
mod node_diff;
mod node_lab;
mod pipeline_faults;
mod real_blocks;
mod repro;
mod resume;
mod support;
mod tidy;
mod verdict;
