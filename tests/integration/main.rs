//! promdrop's integration tests: one binary, one module per feature, sharing
//! the helpers in `util` and the real node_exporter in `node_exporter`.

mod auth;
mod check;
mod cli;
mod corpus;
mod e2e;
mod hostile;
mod node_exporter;
mod packaging;
mod protobuf;
mod pushgateway;
mod run;
mod serve;
mod status;
mod store;
mod util;
