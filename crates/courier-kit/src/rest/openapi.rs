//! The OpenAPI 3.1 document of the REST routes, generated from the descriptor set: one operation per
//! `google.api.http` rule, schemas for the messages and enums they use (the canonical proto3 JSON mapping,
//! described with the proto comments), the JSON `google.rpc.Status` of every error, and bearer authentication.
//! Served at `GET /openapi.json` and committed as docs/openapi.json (a test fails while that copy is stale).

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use prost_types::FileDescriptorProto;
use serde_json::{json, Map, Value};

use super::routes::{BodyRule, Routes};

/// Where the schemas are.
const SCHEMAS: &str = "#/components/schemas/";
const STATUS: &str = "google.rpc.Status";

/// The document for `routes`.
pub(crate) fn document(routes: &Routes) -> Value {
    let mut schemas = Schemas::default();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut tags = BTreeMap::new();
    for (method, path, variables, rpc) in routes.iter() {
        let service = rpc.method.parent_service();
        let service_comment = comment(service.parent_file().file_descriptor_proto(), service.path());
        tags.insert(service.name().to_owned(), service_comment);
        let method_comment =
            comment(rpc.method.parent_file().file_descriptor_proto(), rpc.method.path()).unwrap_or_default();
        let summary = method_comment.split(['.', '\n']).next().unwrap_or_default().trim().to_owned();

        let mut parameters = Vec::new();
        for variable in &variables {
            if let Some(field) = field_at(&rpc.input, variable) {
                parameters.push(json!({
                    "name": variable,
                    "in": "path",
                    "required": true,
                    "description": field_comment(&field),
                    "schema": schemas.field(&field),
                }));
            }
        }
        if rpc.body == BodyRule::None {
            for field in rpc.input.fields() {
                let bound = variables.contains(&field.name());
                if bound || matches!(field.kind(), Kind::Message(m) if !string_message(m.full_name())) || field.is_map()
                {
                    continue;
                }
                parameters.push(json!({
                    "name": field.json_name(),
                    "in": "query",
                    "required": false,
                    "description": field_comment(&field),
                    "schema": schemas.field(&field),
                }));
            }
        }

        let output = schemas.message_ref(&rpc.output);
        let ok = if rpc.server_streaming {
            json!({
                "description": "A stream: one JSON message per line (application/x-ndjson), written as each arrives. \
                                A failure after the first line ends the stream with one {\"error\": Status} line.",
                "content": {"application/x-ndjson": {"schema": output}},
            })
        } else {
            json!({"description": "The response message.", "content": {"application/json": {"schema": output}}})
        };
        let error = json!({
            "description": "An error: a JSON google.rpc.Status (code, message, details with @type), with the HTTP \
                            status grpc-gateway maps its code to (docs/rest.md).",
            "content": {"application/json": {"schema": schemas.message_ref_by_name(routes, STATUS)}},
        });
        let mut operation = json!({
            "operationId": format!("{}_{}", service.name(), rpc.method.name()),
            "tags": [service.name()],
            "summary": summary,
            "description": format!("{method_comment}\n\ngRPC: `{}`.", rpc.grpc_path),
            "parameters": parameters,
            "responses": {"200": ok, "default": error},
        });
        if rpc.body != BodyRule::None {
            operation["requestBody"] = json!({
                "required": false,
                "content": {"application/json": {"schema": schemas.message_ref(&rpc.input)}},
            });
        }
        paths.entry(path).or_default().insert(method.as_str().to_lowercase(), operation);
    }

    let tags: Vec<Value> = tags
        .into_iter()
        .map(|(name, description)| json!({"name": name, "description": description.unwrap_or_default()}))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "courier",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "courier's REST/JSON API: every unary and server-streaming method of its gRPC services, \
                            transcoded in process on the gRPC port (docs/rest.md). Client-streaming and \
                            bidirectional methods (PaymentService.AuthorizeStream, PaymentService.BatchCapture) \
                            have no REST form and are gRPC only. Generated from proto/ by courier-kit's rest \
                            module; do not edit by hand.",
        },
        "servers": [{"url": "http://127.0.0.1:50051", "description": "courier up"}],
        "security": [{"bearer": []}],
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A bearer JWT with the method's scope (`courier up` writes a development token \
                                    to courier-data/token).",
                },
            },
            "schemas": schemas.done(),
        },
    })
}

/// The schemas of the messages and enums referred to so far; a message's fields are described once, when first
/// referred to.
#[derive(Default)]
struct Schemas {
    done: BTreeMap<String, Value>,
    seen: BTreeSet<String>,
}

impl Schemas {
    fn done(self) -> BTreeMap<String, Value> {
        self.done
    }

    fn message_ref_by_name(&mut self, routes: &Routes, name: &str) -> Value {
        let pool = routes.iter().next().map(|(_, _, _, rpc)| rpc.input.parent_pool().clone());
        match pool.and_then(|pool| pool.get_message_by_name(name)) {
            Some(message) => self.message_ref(&message),
            None => json!({"type": "object"}),
        }
    }

    /// A reference to `message`'s schema (or the inline schema of a well-known type with a string form).
    fn message_ref(&mut self, message: &MessageDescriptor) -> Value {
        match message.full_name() {
            "google.protobuf.Timestamp" => return json!({"type": "string", "format": "date-time"}),
            "google.protobuf.Duration" => return json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}),
            "google.protobuf.Any" => {
                return json!({
                    "type": "object",
                    "description": "A message of the type named by @type, with that message's fields beside it.",
                    "properties": {"@type": {"type": "string"}},
                    "required": ["@type"],
                    "additionalProperties": true,
                })
            }
            "google.protobuf.Struct" | "google.protobuf.Value" => return json!({}),
            _ => {}
        }
        let name = message.full_name().to_owned();
        if self.seen.insert(name.clone()) {
            let mut properties = Map::new();
            for field in message.fields() {
                let mut schema = self.field(&field);
                if let Some(text) = field_comment(&field) {
                    schema = with_description(schema, &text);
                }
                properties.insert(field.json_name().to_owned(), schema);
            }
            let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
            if let Some(text) = comment(message.parent_file().file_descriptor_proto(), message.path()) {
                schema["description"] = json!(text);
            }
            self.done.insert(name.clone(), schema);
        }
        json!({"$ref": format!("{SCHEMAS}{name}")})
    }

    fn enum_ref(&mut self, enumeration: &EnumDescriptor) -> Value {
        let name = enumeration.full_name().to_owned();
        if self.seen.insert(name.clone()) {
            let file = enumeration.parent_file();
            let file = file.file_descriptor_proto();
            let values: Vec<String> = enumeration.values().map(|v| v.name().to_owned()).collect();
            let described: Vec<String> = enumeration
                .values()
                .map(|v| format!("- `{}`: {}", v.name(), comment(file, v.path()).unwrap_or_default()))
                .collect();
            let text = comment(file, enumeration.path()).unwrap_or_default();
            self.done.insert(
                name.clone(),
                json!({"type": "string", "enum": values, "description": format!("{text}\n\n{}", described.join("\n"))}),
            );
        }
        json!({"$ref": format!("{SCHEMAS}{name}")})
    }

    /// A field's schema: repeated and map fields as arrays and objects of their values.
    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else { unreachable!("a map field is a message") };
            let value = entry.map_entry_value_field();
            return json!({"type": "object", "additionalProperties": self.kind(&value.kind())});
        }
        let single = self.kind(&field.kind());
        if field.is_list() {
            json!({"type": "array", "items": single})
        } else {
            single
        }
    }

    /// A value's schema in the canonical JSON mapping (64-bit integers as strings, enums by name).
    fn kind(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({"type": "integer", "format": "int32"}),
            Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int64", "minimum": 0}),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Message(message) => self.message_ref(message),
            Kind::Enum(enumeration) => self.enum_ref(enumeration),
        }
    }
}

/// `schema` with a description; a `$ref` is wrapped (3.1 allows siblings, but tools read `allOf` better).
fn with_description(schema: Value, text: &str) -> Value {
    if schema.get("$ref").is_some() {
        json!({"allOf": [schema], "description": text})
    } else {
        let mut schema = schema;
        schema["description"] = json!(text);
        schema
    }
}

/// Well-known messages whose JSON form is a string (and so can be a query parameter).
fn string_message(name: &str) -> bool {
    matches!(name, "google.protobuf.Timestamp" | "google.protobuf.Duration")
}

/// The field at a dotted path.
fn field_at(message: &MessageDescriptor, path: &str) -> Option<FieldDescriptor> {
    let mut message = message.clone();
    let mut names = path.split('.').peekable();
    while let Some(name) = names.next() {
        let field = message.get_field_by_name(name)?;
        if names.peek().is_none() {
            return Some(field);
        }
        let Kind::Message(nested) = field.kind() else { return None };
        message = nested;
    }
    None
}

fn field_comment(field: &FieldDescriptor) -> Option<String> {
    comment(field.parent_file().file_descriptor_proto(), field.path())
}

/// The leading (else trailing) comment at `path` of `file`, without the `//` spacing.
fn comment(file: &FileDescriptorProto, path: &[i32]) -> Option<String> {
    let location = file.source_code_info.as_ref()?.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref().or(location.trailing_comments.as_deref())?;
    let lines: Vec<&str> = text.lines().map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end()).collect();
    Some(lines.join("\n").trim().to_owned()).filter(|t| !t.is_empty())
}
