//! Cluster mode's SQL: the schema and the operations.
