//! A second reading of a document whose YAML parser stopped at a duplicate key: each
//! duplicate is reported with its own path and line, and the first value of each key is
//! kept, so the rest of the file is still checked and every other error reported too.

use super::reader::child;
use super::ConfigError;
use serde_yaml_ng::{Mapping, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

/// The document with duplicates dropped, and one error per duplicate; `None` when the
/// document has none (its parse error is something else) or does not parse at all.
pub fn read(source: &str) -> Option<(Value, Vec<ConfigError>)> {
    let mut builder = Builder::default();
    Parser::new_from_str(source)
        .load(&mut builder, false)
        .ok()?;
    if builder.duplicates.is_empty() {
        return None;
    }
    let value = builder.done.pop().unwrap_or(Value::Null);
    Some((value, builder.duplicates))
}

enum Frame {
    Map {
        path: String,
        map: Mapping,
        /// The key waiting for its value, with where it was first written when it is a
        /// duplicate (its value is then read and dropped).
        key: Option<(Value, Option<usize>)>,
        lines: HashMap<String, usize>,
        anchor: usize,
    },
    Seq {
        path: String,
        items: Vec<Value>,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    done: Vec<Value>,
    anchors: HashMap<usize, Value>,
    duplicates: Vec<ConfigError>,
}

fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match Yaml::from_str(&text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(flag) => Value::Bool(flag),
        Yaml::Integer(number) => Value::Number(number.into()),
        Yaml::Real(real) => real
            .parse::<f64>()
            .map_or(Value::String(real), |f| Value::Number(f.into())),
        _ => Value::String(text),
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        _ => "?".into(),
    }
}

impl Builder {
    /// The path the next node will have.
    fn next_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Map { path, key, .. }) => match key {
                Some((key, _)) => child(path, &key_text(key)),
                None => path.clone(),
            },
            Some(Frame::Seq { path, items, .. }) => format!("{path}[{}]", items.len()),
        }
    }

    /// Places a finished node in its parent: a key, a value, an item, or the document.
    fn place(&mut self, node: Value, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.done.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                path,
                map,
                key,
                lines,
                ..
            }) => match key.take() {
                None => {
                    let name = key_text(&node);
                    let line = mark.line();
                    let first = lines.get(&name).copied();
                    if let Some(first) = first {
                        self.duplicates.push(ConfigError {
                            path: child(path, &name),
                            line: Some(line),
                            message: format!(
                                "duplicate key \"{name}\" (first written on line {first}); \
                                 the first one is used"
                            ),
                        });
                    } else {
                        lines.insert(name, line);
                    }
                    *key = Some((node, first));
                }
                Some((name, None)) => {
                    map.insert(name, node);
                }
                Some((_, Some(_))) => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, style, anchor, _) => self.place(scalar(text, style), anchor, mark),
            Event::Alias(anchor) => {
                let node = self.anchors.get(&anchor).cloned().unwrap_or(Value::Null);
                self.place(node, 0, mark);
            }
            Event::MappingStart(anchor, _) => {
                let path = self.next_path();
                self.stack.push(Frame::Map {
                    path,
                    map: Mapping::new(),
                    key: None,
                    lines: HashMap::new(),
                    anchor,
                });
            }
            Event::SequenceStart(anchor, _) => {
                let path = self.next_path();
                self.stack.push(Frame::Seq {
                    path,
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Map { map, anchor, .. }) => (Value::Mapping(map), anchor),
                    Some(Frame::Seq { items, anchor, .. }) => (Value::Sequence(items), anchor),
                    None => return,
                };
                self.place(node, anchor, mark);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duplicate_is_reported_where_it_is_and_the_first_value_kept() {
        let source = "listen: 127.0.0.1:1\nadmin:\n  listen: 127.0.0.1:2\n  listen: 127.0.0.1:3\nlisten: 127.0.0.1:4\nroutes:\n  - { path_prefix: /a, upstream: u }\n";
        let (value, errors) = read(source).unwrap();
        let found: Vec<(&str, Option<usize>)> =
            errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
        assert_eq!(found, [("admin.listen", Some(4)), ("listen", Some(5))]);
        assert!(errors[1].message.contains("first written on line 1"));
        assert_eq!(value["listen"], Value::String("127.0.0.1:1".into()));
        assert_eq!(
            value["admin"]["listen"],
            Value::String("127.0.0.1:2".into())
        );
        assert_eq!(
            value["routes"][0]["path_prefix"],
            Value::String("/a".into())
        );
    }

    #[test]
    fn a_document_without_duplicates_is_left_to_the_yaml_parser() {
        assert!(read("listen: 127.0.0.1:1\n").is_none());
        assert!(read("listen: [unclosed\n").is_none());
    }
}
