//! Which scope each method needs. Each service crate declares its table next to its methods and the server
//! collects them; a method that is in no table is denied (default deny), so a new RPC is closed until someone
//! writes its rule.

use std::collections::{BTreeMap, BTreeSet};

/// What a call to one method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Nothing: anyone may call it (health).
    Open,
    /// A valid principal, whatever its scopes (reflection, unless opened).
    Authenticated,
    /// A valid principal holding this scope.
    Scope(&'static str),
}

/// Full method path (`/pkg.Service/Method`) -> [`Rule`].
#[derive(Debug, Clone, Default)]
pub struct MethodScopes {
    methods: BTreeMap<String, Rule>,
    services: BTreeMap<String, Rule>,
    audited: BTreeSet<String>,
}

/// Health is always open: balancers and probes carry no credentials.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
/// Both reflection versions.
const REFLECTION_SERVICES: [&str; 2] =
    ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

impl MethodScopes {
    /// Health open; reflection open or needing any valid principal.
    pub fn new(open_reflection: bool) -> Self {
        let mut scopes = Self::default();
        scopes.services.insert(HEALTH_SERVICE.to_owned(), Rule::Open);
        let reflection = if open_reflection { Rule::Open } else { Rule::Authenticated };
        for service in REFLECTION_SERVICES {
            scopes.services.insert(service.to_owned(), reflection);
        }
        scopes
    }

    /// Adds a service's table: (full method path, scope) pairs.
    pub fn extend(&mut self, table: &[(&'static str, &'static str)]) {
        for (method, scope) in table {
            self.methods.insert((*method).to_owned(), Rule::Scope(scope));
        }
    }

    /// Marks methods whose every call is written to the audit log (money-moving calls), allowed or not.
    pub fn audit(&mut self, methods: &[&'static str]) {
        self.audited.extend(methods.iter().map(|m| (*m).to_owned()));
    }

    /// Whether every call of `path` is audited.
    pub fn is_audited(&self, path: &str) -> bool {
        self.audited.contains(path)
    }

    /// The rule for a request path, `None` when there is none (deny).
    pub fn rule(&self, path: &str) -> Option<Rule> {
        if let Some(rule) = self.methods.get(path) {
            return Some(*rule);
        }
        let service = path.strip_prefix('/')?.split_once('/')?.0;
        self.services.get(service).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_have_their_scope_health_is_open_and_the_rest_is_denied() {
        let mut scopes = MethodScopes::new(false);
        scopes.extend(&[("/pkg.Svc/Read", "svc:read")]);
        assert_eq!(scopes.rule("/pkg.Svc/Read"), Some(Rule::Scope("svc:read")));
        assert_eq!(scopes.rule("/pkg.Svc/Write"), None, "no rule: denied");
        assert_eq!(scopes.rule("/grpc.health.v1.Health/Check"), Some(Rule::Open));
        assert_eq!(scopes.rule("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), Some(Rule::Authenticated));
        assert_eq!(MethodScopes::new(true).rule("/grpc.reflection.v1alpha.ServerReflection/X"), Some(Rule::Open));
        assert_eq!(scopes.rule("no-slash"), None);
    }
}
