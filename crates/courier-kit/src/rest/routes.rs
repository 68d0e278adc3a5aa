//! The REST routes: every `google.api.http` rule of the served services, read from the descriptor set, and the
//! matching of a request's method and path against them.
//!
//! Templates are the subset of the `google.api.HttpRule` syntax courier's contracts use: literal segments,
//! single-segment variables (`{id}` or `{id=*}`, a field path such as `{user.id}` allowed) and a trailing custom
//! verb (`/v1/authorizations/{authorization_id}:capture`). A rule using more (`**`, multi-segment variables) is
//! left out with a warning, as is any rule of a client-streaming or bidirectional method, which has no REST form.

use std::sync::Arc;

use http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor, Value};

/// Where a request's JSON body goes in the request message (the rule's `body`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BodyRule {
    /// No body: every field comes from the path and the query string.
    None,
    /// `body: "*"`: the body is the request message (fields not bound by the path).
    Whole,
    /// `body: "field"`: the body is that field of the request message.
    Field(String),
}

/// One RPC reachable over REST.
#[derive(Debug)]
pub(crate) struct Rpc {
    /// `/package.Service/Method`, the gRPC path the transcoded request is sent to.
    pub grpc_path: http::uri::PathAndQuery,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    pub server_streaming: bool,
    pub body: BodyRule,
    /// The method itself (its comments, for the OpenAPI document).
    pub method: MethodDescriptor,
}

/// One segment of a path template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// A variable bound to a field path (`user.id`).
    Field(String),
}

/// A parsed path template.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Template {
    segments: Vec<Segment>,
    verb: Option<String>,
}

/// One HTTP binding of an RPC.
#[derive(Debug)]
struct Route {
    method: Method,
    template: Template,
    rpc: Arc<Rpc>,
}

/// What a request's method and path matched.
#[derive(Debug)]
pub(crate) enum Match<'a> {
    /// This RPC, with the path's variables as (field path, value).
    Found(&'a Arc<Rpc>, Vec<(String, String)>),
    /// The path is a route's, but not for this method; these are.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// Every route of the served services. Matching is a scan: there are a few dozen routes at most.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// The routes of the services named in `services` (full names) found in `pool`.
    pub fn new(pool: &DescriptorPool, services: &[&str]) -> Self {
        let mut routes = Vec::new();
        let Some(extension) = pool.get_extension_by_name("google.api.http") else {
            return Self { routes };
        };
        for service in pool.services().filter(|s| services.contains(&s.full_name())) {
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let rule = options.get_extension(&extension);
                let Value::Message(rule) = rule.as_ref() else { continue };
                if method.is_client_streaming() {
                    tracing::warn!(
                        method = method.full_name(),
                        "a client-streaming method has no REST form; rule ignored"
                    );
                    continue;
                }
                add_rule(&mut routes, &method, rule, true);
            }
        }
        Self { routes }
    }

    /// The route for `method` and `path` (the URI's path, still percent-encoded).
    pub fn find(&self, method: &Method, path: &str) -> Match<'_> {
        let Some(segments) = split(path) else { return Match::NotFound };
        let mut allowed = Vec::new();
        for route in &self.routes {
            let Some(params) = route.template.matches(&segments) else { continue };
            if route.method == *method {
                return Match::Found(&route.rpc, params);
            }
            if !allowed.contains(&route.method) {
                allowed.push(route.method.clone());
            }
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed(allowed)
        }
    }

    /// Every route as (HTTP method, OpenAPI path template, path variables, RPC), in the rules' order.
    pub fn iter(&self) -> impl Iterator<Item = (&Method, String, Vec<&str>, &Arc<Rpc>)> {
        self.routes.iter().map(|r| {
            let variables = r
                .template
                .segments
                .iter()
                .filter_map(|s| match s {
                    Segment::Field(field) => Some(field.as_str()),
                    Segment::Literal(_) => None,
                })
                .collect();
            (&r.method, r.template.to_string(), variables, &r.rpc)
        })
    }

    /// (HTTP method, path template, gRPC path) of every route, for the log and for documentation.
    pub fn describe(&self) -> Vec<(String, String, String)> {
        self.routes
            .iter()
            .map(|r| (r.method.to_string(), r.template.to_string(), r.rpc.grpc_path.to_string()))
            .collect()
    }
}

/// The rule's binding (and, at the top level, its additional bindings) as routes.
fn add_rule(routes: &mut Vec<Route>, method: &MethodDescriptor, rule: &DynamicMessage, top: bool) {
    let body = match rule.get_field_by_name("body").as_deref().and_then(Value::as_str).unwrap_or("") {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        field => BodyRule::Field(field.to_owned()),
    };
    let mut binding = None;
    for verb in ["get", "put", "post", "delete", "patch"] {
        if rule.has_field_by_name(verb) {
            let path = rule.get_field_by_name(verb).and_then(|v| v.as_str().map(str::to_owned));
            binding = path.map(|path| (Method::from_bytes(verb.to_uppercase().as_bytes()).expect("a method"), path));
        }
    }
    if rule.has_field_by_name("custom") {
        if let Some(Value::Message(custom)) = rule.get_field_by_name("custom").as_deref() {
            let kind = custom.get_field_by_name("kind").and_then(|v| v.as_str().map(str::to_owned));
            let path = custom.get_field_by_name("path").and_then(|v| v.as_str().map(str::to_owned));
            if let (Some(kind), Some(path)) = (kind.and_then(|k| Method::from_bytes(k.as_bytes()).ok()), path) {
                binding = Some((kind, path));
            }
        }
    }
    if let Some((http_method, path)) = binding {
        match Template::parse(&path) {
            Some(template) => {
                let rpc = Arc::new(Rpc {
                    grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name())
                        .parse()
                        .expect("a method path"),
                    input: method.input(),
                    output: method.output(),
                    server_streaming: method.is_server_streaming(),
                    body,
                    method: method.clone(),
                });
                routes.push(Route { method: http_method, template, rpc });
            }
            None => tracing::warn!(method = method.full_name(), path, "unsupported HTTP path template; rule ignored"),
        }
    }
    if top {
        if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
            for extra in more.iter().filter_map(Value::as_message) {
                add_rule(routes, method, extra, false);
            }
        }
    }
}

/// A request path's segments, percent-decoded; `None` when one does not decode to UTF-8.
fn split(path: &str) -> Option<Vec<String>> {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split('/')
        .map(|segment| percent_encoding::percent_decode_str(segment).decode_utf8().ok().map(|s| s.into_owned()))
        .collect()
}

impl Template {
    /// Parses `/v1/things/{thing_id}:verb`; `None` for syntax outside the supported subset.
    fn parse(path: &str) -> Option<Self> {
        let path = path.strip_prefix('/')?;
        // The verb is after the last `:` that is not inside a variable.
        let (path, verb) = match path.rfind(':') {
            Some(at) if !path[at..].contains('}') && !path[at..].contains('/') => {
                (&path[..at], Some(path[at + 1..].to_owned()))
            }
            _ => (path, None),
        };
        let mut segments = Vec::new();
        for segment in path.split('/') {
            if let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let (field, pattern) = inner.split_once('=').unwrap_or((inner, "*"));
                if pattern != "*" || field.is_empty() {
                    return None;
                }
                segments.push(Segment::Field(field.to_owned()));
            } else if segment.is_empty() || segment.contains(['{', '}', '*']) {
                return None;
            } else {
                segments.push(Segment::Literal(segment.to_owned()));
            }
        }
        Some(Self { segments, verb })
    }

    /// The variables' values when `segments` (decoded) match.
    fn matches(&self, segments: &[String]) -> Option<Vec<(String, String)>> {
        let mut segments = segments.to_vec();
        let last = segments.last_mut()?;
        match &self.verb {
            Some(verb) => {
                let stem = last.strip_suffix(verb.as_str())?.strip_suffix(':')?;
                *last = stem.to_owned();
            }
            // Without a verb, a last segment with a colon is some other route's verb, not an id.
            None if last.contains(':') => return None,
            None => {}
        }
        if segments.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (segment, template) in segments.into_iter().zip(&self.segments) {
            match template {
                Segment::Literal(literal) if *literal == segment => {}
                Segment::Literal(_) => return None,
                Segment::Field(_) if segment.is_empty() => return None,
                Segment::Field(field) => params.push((field.clone(), segment)),
            }
        }
        Some(params)
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => write!(f, "/{literal}")?,
                Segment::Field(field) => write!(f, "/{{{field}}}")?,
            }
        }
        if let Some(verb) = &self.verb {
            write!(f, ":{verb}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(path: &str) -> Vec<String> {
        split(path).unwrap()
    }

    #[test]
    fn templates_parse_and_match_with_variables_and_verbs() {
        let capture = Template::parse("/v1/authorizations/{authorization_id}:capture").unwrap();
        assert_eq!(capture.to_string(), "/v1/authorizations/{authorization_id}:capture");
        assert_eq!(
            capture.matches(&segments("/v1/authorizations/auth_1:capture")),
            Some(vec![("authorization_id".into(), "auth_1".into())])
        );
        assert_eq!(capture.matches(&segments("/v1/authorizations/auth_1:void")), None);
        assert_eq!(capture.matches(&segments("/v1/authorizations/:capture")), None);

        let get = Template::parse("/v1/authorizations/{authorization_id}").unwrap();
        assert_eq!(get.matches(&segments("/v1/authorizations/auth_1:capture")), None);
        assert_eq!(get.matches(&segments("/v1/authorizations/a%20b")).unwrap()[0].1, "a b");
        assert_eq!(get.matches(&segments("/v1/authorizations")), None);
        assert_eq!(get.matches(&segments("/v1/authorizations/a/b")), None);

        let score = Template::parse("/v1/risk:score").unwrap();
        assert_eq!(score.matches(&segments("/v1/risk:score")), Some(vec![]));
        assert_eq!(Template::parse("/v1/{name=things/*}"), None);
        assert_eq!(Template::parse("/v1/**"), None);
    }
}
