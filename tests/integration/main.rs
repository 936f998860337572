//! promdrop's integration tests: one binary, one module per feature, sharing
//! the helpers in `util` and the real node_exporter in `node_exporter`.

mod check;
mod corpus;
mod node_exporter;
mod protobuf;
mod pushgateway;
mod run;
mod serve;
mod store;
mod util;
