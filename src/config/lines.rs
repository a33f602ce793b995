//! Maps each YAML path (`routes[2].require[0]`) to the line it was written on, for error messages.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line numbers (1-based) of every key and sequence item in a YAML document.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// Indexes `source`. A document that does not parse yields an empty index: the
    /// syntax error itself is reported by the YAML deserializer.
    pub fn build(source: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut builder, false).is_err() {
            return Self::default();
        }
        Self {
            lines: builder.lines,
        }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Builder {
    /// Path of the value about to be read, or `None` when the next scalar is a map key.
    fn value_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map {
                path,
                key: Some(key),
            }) => Some(join(path, key)),
            Some(Frame::Seq { path, index }) => Some(format!("{path}[{index}]")),
        }
    }

    /// Marks the current value as read, so the parent moves to its next key or item.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn record(&mut self, path: &str, mark: Marker) {
        self.lines.entry(path.to_string()).or_insert(mark.line());
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) => match self.value_path() {
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let full = join(path, &text);
                        *key = Some(text);
                        self.lines.entry(full).or_insert(mark.line());
                    }
                }
                Some(path) => {
                    self.record(&path, mark);
                    self.value_done();
                }
            },
            Event::Alias(_) => {
                if let Some(path) = self.value_path() {
                    self.record(&path, mark);
                }
                self.value_done();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A mapping used as a key has no path of its own; give it a placeholder.
                let path = self.value_path().unwrap_or_else(|| "?".to_string());
                self.record(&path, mark);
                self.stack.push(match event {
                    Event::MappingStart(..) => Frame::Map { path, key: None },
                    _ => Frame::Seq { path, index: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "listen: 0.0.0.0:8080\nstore:\n  url: sqlite://x.db\nroutes:\n  - path_prefix: /a\n    require: [a, b]\n  - path_prefix: /b\n    rate_limit: { requests: 1, per: 1s }\n";

    #[test]
    fn finds_keys_items_and_flow_values() {
        let index = LineIndex::build(DOC);
        assert_eq!(index.line_of("listen"), Some(1));
        assert_eq!(index.line_of("store.url"), Some(3));
        assert_eq!(index.line_of("routes[0]"), Some(5));
        assert_eq!(index.line_of("routes[0].require[1]"), Some(6));
        assert_eq!(index.line_of("routes[1].path_prefix"), Some(7));
        assert_eq!(index.line_of("routes[1].rate_limit.per"), Some(8));
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        let index = LineIndex::build(DOC);
        assert_eq!(index.line_of("routes[1].methods"), Some(7));
        assert_eq!(index.line_of("nothing.here"), None);
    }
}
