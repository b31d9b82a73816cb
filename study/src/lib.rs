//! edgeloop's study: what the classic texts say about select, poll, epoll,
//! LT and ET, checked on a real kernel. The programs are this crate's
//! binaries; `docs/study.md` has the table of claims and what each showed.
//!
//! - `cargo run --release -p edgeloop-study --bin lt_vs_et`: level vs
//!   edge vs oneshot traced side by side ([`trace`]), then their cost.
//! - `cargo run --release -p edgeloop-study --bin backends`: what one wait
//!   costs on select, poll and epoll with N watched fds ([`wait_cost`]).
//! - `cargo run --release -p edgeloop-study --bin models`: the five IO
//!   models of the texts as echo servers, measured by the bench's load
//!   generator.
//! - `cargo run --release -p edgeloop-study --bin pitfalls`: the epoll
//!   pitfalls that bit real event loops, reproduced on raw syscalls, and
//!   edgeloop's answer to each ([`pitfalls`]).

pub mod pitfalls;
pub mod trace;
pub mod wait_cost;
