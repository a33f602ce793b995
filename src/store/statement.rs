//! Statement helpers shared by the store's tables: numbered arguments for statements
//! built from optional filters, and JSON columns.

use sqlx::Any;

/// The arguments of a statement built from optional filters: each is numbered as it is
/// added, then bound in that order.
#[derive(Default)]
pub(super) struct Args(Vec<Arg>);

enum Arg {
    Int(i64),
    Text(String),
}

impl Args {
    /// Adds an integer; returns its placeholder.
    pub(super) fn int(&mut self, value: i64) -> String {
        self.0.push(Arg::Int(value));
        format!("${}", self.0.len())
    }

    pub(super) fn text(&mut self, value: String) -> String {
        self.0.push(Arg::Text(value));
        format!("${}", self.0.len())
    }

    pub(super) fn bind<'q>(
        self,
        mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        for arg in self.0 {
            query = match arg {
                Arg::Int(value) => query.bind(value),
                Arg::Text(value) => query.bind(value),
            };
        }
        query
    }
}

/// A value for a JSON text column.
pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}
