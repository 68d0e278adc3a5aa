//! Generates `docs/api.md`, the API reference, from the descriptor set this crate embeds
//! ([`courier_proto::FILE_DESCRIPTOR_SET`], compiled by protox with source info, so it carries the proto comments),
//! and fails when the committed file differs from what the contracts say now.
//!
//! Regenerate: `COURIER_WRITE_API_DOCS=1 cargo test -p courier-proto --test api_docs`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    ServiceDescriptorProto,
};

const WRITE_ENV: &str = "COURIER_WRITE_API_DOCS";
const REGENERATE: &str = "COURIER_WRITE_API_DOCS=1 cargo test -p courier-proto --test api_docs";
/// The contracts documented, in this order; imports (google.*) are referred to by name only.
const FILES: &[&str] =
    &["courier/users/v1/users.proto", "courier/payments/v1/payments.proto", "courier/risk/v1/risk.proto"];

// Field numbers of descriptor.proto, for SourceCodeInfo paths.
const FILE_MESSAGE_TYPE: i32 = 4;
const FILE_ENUM_TYPE: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED_TYPE: i32 = 3;
const MESSAGE_ENUM_TYPE: i32 = 4;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

#[test]
fn api_reference_matches_the_contracts() {
    let rendered = render();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
    if std::env::var_os(WRITE_ENV).is_some() {
        std::fs::write(&path, &rendered).expect("write docs/api.md");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != rendered {
        let line = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()))
            + 1;
        panic!("docs/api.md is stale: run `{REGENERATE}` (first difference at line {line})");
    }
}

/// A method's `google.api.http` rule as `VERB /path` and whether it takes a JSON body, read with
/// prost-reflect: prost-types drops extension options.
fn http_route(service: &str, method: &str) -> Option<(String, bool)> {
    use prost_reflect::DescriptorPool;
    let pool = DescriptorPool::decode(courier_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set decodes");
    let extension = pool.get_extension_by_name("google.api.http").expect("google/api/annotations.proto is in the set");
    let method = pool.get_service_by_name(service)?.methods().find(|m| m.name() == method)?;
    let options = method.options();
    if !options.has_extension(&extension) {
        return None;
    }
    let rule = options.get_extension(&extension);
    let rule = rule.as_message()?;
    let (verb, path) = ["get", "put", "post", "delete", "patch"]
        .into_iter()
        .filter(|verb| rule.has_field_by_name(verb))
        .find_map(|verb| Some((verb, rule.get_field_by_name(verb)?.as_str()?.to_owned())))?;
    let body = rule.get_field_by_name("body").and_then(|b| b.as_str().map(str::to_owned)).unwrap_or_default();
    Some((format!("{} {path}", verb.to_uppercase()), !body.is_empty()))
}

/// The comments of one file, by SourceCodeInfo path.
struct Comments(HashMap<Vec<i32>, String>);

impl Comments {
    fn of(file: &FileDescriptorProto) -> Self {
        let mut map = HashMap::new();
        for location in file.source_code_info.iter().flat_map(|info| &info.location) {
            let text = location.leading_comments.as_deref().or(location.trailing_comments.as_deref());
            if let Some(text) = text.map(clean).filter(|t| !t.is_empty()) {
                map.insert(location.path.clone(), text);
            }
        }
        Comments(map)
    }

    /// The comment as paragraphs (line breaks kept; markdown joins the lines of a paragraph).
    fn block(&self, path: &[i32]) -> Option<String> {
        self.0.get(path).map(|t| escape(t))
    }

    /// The comment on one line, for a table cell.
    fn cell(&self, path: &[i32]) -> String {
        self.0
            .get(path)
            .map(|t| escape(&t.split_whitespace().collect::<Vec<_>>().join(" ")).replace('|', "\\|"))
            .unwrap_or_default()
    }
}

/// A comment without the space after `//` and without trailing blanks.
fn clean(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end()).collect();
    lines.join("\n").trim().to_owned()
}

/// `<` outside code spans, so a comment such as "ALLOW < REVIEW" never reads as HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                out.push(c);
            }
            '<' if !in_code => out.push_str("&lt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Everything one file's rendering needs to name types.
struct Ctx<'a> {
    package: &'a str,
    comments: Comments,
    /// Map entry messages by full name (".pkg.Msg.FooEntry"), so a map field renders as `map<K, V>`.
    map_entries: HashMap<String, &'a DescriptorProto>,
}

fn render() -> String {
    let set =
        FileDescriptorSet::decode(courier_proto::FILE_DESCRIPTOR_SET).expect("the embedded descriptor set decodes");
    let mut out = String::new();
    out.push_str("# courier API reference\n\n");
    out.push_str("<!-- Generated from proto/ by crates/courier-proto/tests/api_docs.rs; do not edit by hand. -->\n\n");
    out.push_str(
        "Generated from the contracts in `proto/` (the descriptor set courier-proto embeds, with the proto \
         comments), so it says what the `.proto` files say. Do not edit it by hand: change the comments in \
         `proto/` and regenerate with\n\n",
    );
    let _ = writeln!(out, "```sh\n{REGENERATE}\n```\n");
    out.push_str(
        "`cargo test` fails while this file is stale. Each method's REST/JSON route (its `google.api.http` \
         rule, served on the gRPC port: see [rest.md](rest.md)) is listed with it; client-streaming and \
         bidirectional methods have none and are gRPC only.\n\n",
    );
    out.push_str(
        "Types outside a package (`google.protobuf.Timestamp`, `google.rpc.Status`, ...) are the well-known \
                  protobuf and googleapis types.\n\n",
    );

    let files: Vec<&FileDescriptorProto> = FILES
        .iter()
        .map(|name| set.file.iter().find(|f| f.name() == *name).unwrap_or_else(|| panic!("{name} in the set")))
        .collect();

    out.push_str("## Contents\n\n");
    for file in &files {
        let _ = writeln!(out, "- [`{}`](#{})", file.package(), anchor(file.package()));
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            let _ = writeln!(out, "  - [{}](#{})", service.name(), anchor(&full));
        }
    }
    out.push('\n');

    for file in files {
        render_file(&mut out, file);
    }
    out
}

/// An explicit anchor id: the full protobuf name with the dots as dashes.
fn anchor(full_name: &str) -> String {
    full_name.replace('.', "-").to_lowercase()
}

fn heading(out: &mut String, level: usize, full_name: &str, text: &str) {
    let _ = writeln!(out, "<a id=\"{}\"></a>\n\n{} {text}\n", anchor(full_name), "#".repeat(level));
}

fn render_file(out: &mut String, file: &FileDescriptorProto) {
    let package = file.package();
    let mut map_entries = HashMap::new();
    for message in &file.message_type {
        collect_map_entries(&format!(".{package}.{}", message.name()), message, &mut map_entries);
    }
    let ctx = Ctx { package, comments: Comments::of(file), map_entries };

    heading(out, 2, package, &format!("`{package}`"));
    let _ = writeln!(out, "Defined in `proto/{}`.\n", file.name());

    for (i, service) in file.service.iter().enumerate() {
        render_service(out, &ctx, service, &[FILE_SERVICE, i as i32]);
    }
    if !file.message_type.is_empty() {
        let _ = writeln!(out, "### Messages of `{package}`\n");
    }
    for (i, message) in file.message_type.iter().enumerate() {
        render_message(out, &ctx, package, message, &[FILE_MESSAGE_TYPE, i as i32]);
    }
    if !file.enum_type.is_empty() {
        let _ = writeln!(out, "### Enums of `{package}`\n");
    }
    for (i, enumeration) in file.enum_type.iter().enumerate() {
        render_enum(out, &ctx, package, enumeration, &[FILE_ENUM_TYPE, i as i32]);
    }
}

fn collect_map_entries<'a>(full: &str, message: &'a DescriptorProto, into: &mut HashMap<String, &'a DescriptorProto>) {
    for nested in &message.nested_type {
        let name = format!("{full}.{}", nested.name());
        if nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            into.insert(name.clone(), nested);
        }
        collect_map_entries(&name, nested, into);
    }
}

fn render_service(out: &mut String, ctx: &Ctx, service: &ServiceDescriptorProto, path: &[i32]) {
    let full = format!("{}.{}", ctx.package, service.name());
    heading(out, 3, &full, service.name());
    if let Some(text) = ctx.comments.block(path) {
        let _ = writeln!(out, "{text}\n");
    }
    out.push_str("| Method | Request | Response | Kind | HTTP |\n|---|---|---|---|---|\n");
    for method in &service.method {
        let kind = match (method.client_streaming(), method.server_streaming()) {
            (false, false) => "unary",
            (false, true) => "server stream",
            (true, false) => "client stream",
            (true, true) => "bidi stream",
        };
        let route = http_route(&full, method.name()).map_or_else(|| "gRPC only".to_owned(), |(r, _)| format!("`{r}`"));
        let _ = writeln!(
            out,
            "| [{name}](#{anchor}) | {req} | {resp} | {kind} | {route} |",
            name = method.name(),
            anchor = anchor(&format!("{full}.{}", method.name())),
            req = type_link(ctx, method.input_type()),
            resp = type_link(ctx, method.output_type()),
        );
    }
    out.push('\n');
    for (i, method) in service.method.iter().enumerate() {
        let method_full = format!("{full}.{}", method.name());
        heading(out, 4, &method_full, &format!("{}.{}", service.name(), method.name()));
        let stream = |streaming: bool| if streaming { "stream " } else { "" };
        let _ = writeln!(
            out,
            "`rpc {name}({cs}{req}) returns ({ss}{resp})`\n",
            name = method.name(),
            cs = stream(method.client_streaming()),
            req = short_name(ctx, method.input_type()),
            ss = stream(method.server_streaming()),
            resp = short_name(ctx, method.output_type()),
        );
        match http_route(&full, method.name()) {
            Some((route, true)) => {
                let _ = writeln!(out, "HTTP: `{route}`, the request as its JSON body (path fields from the path).\n");
            }
            Some((route, false)) => {
                let _ = writeln!(out, "HTTP: `{route}`, the other request fields as query parameters.\n");
            }
            None => out.push_str("gRPC only: a client or bidirectional stream has no REST/JSON form.\n\n"),
        }
        let mut method_path = path.to_vec();
        method_path.extend([SERVICE_METHOD, i as i32]);
        if let Some(text) = ctx.comments.block(&method_path) {
            let _ = writeln!(out, "{text}\n");
        }
    }
}

fn render_message(out: &mut String, ctx: &Ctx, parent: &str, message: &DescriptorProto, path: &[i32]) {
    let full = format!("{parent}.{}", message.name());
    let display = full.strip_prefix(&format!("{}.", ctx.package)).unwrap_or(&full);
    heading(out, 4, &full, display);
    if let Some(text) = ctx.comments.block(path) {
        let _ = writeln!(out, "{text}\n");
    }
    if message.field.is_empty() {
        out.push_str("No fields.\n\n");
    } else {
        out.push_str("| Field | Number | Type | Description |\n|---|---|---|---|\n");
        for (i, field) in message.field.iter().enumerate() {
            let mut field_path = path.to_vec();
            field_path.extend([MESSAGE_FIELD, i as i32]);
            let mut description = ctx.comments.cell(&field_path);
            // A real oneof (not proto3 `optional`'s synthetic one): say which fields exclude each other.
            if let Some(index) = field.oneof_index.filter(|_| !field.proto3_optional()) {
                let oneof = message.oneof_decl[index as usize].name();
                let note = format!("One of `{oneof}`.");
                description = if description.is_empty() { note } else { format!("{note} {description}") };
            }
            let _ = writeln!(
                out,
                "| `{name}` | {number} | {ty} | {description} |",
                name = field.name(),
                number = field.number(),
                ty = field_type(ctx, field),
            );
        }
        out.push('\n');
    }
    for (i, nested) in message.nested_type.iter().enumerate() {
        if nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            continue;
        }
        let mut nested_path = path.to_vec();
        nested_path.extend([MESSAGE_NESTED_TYPE, i as i32]);
        render_message(out, ctx, &full, nested, &nested_path);
    }
    for (i, enumeration) in message.enum_type.iter().enumerate() {
        let mut enum_path = path.to_vec();
        enum_path.extend([MESSAGE_ENUM_TYPE, i as i32]);
        render_enum(out, ctx, &full, enumeration, &enum_path);
    }
}

fn render_enum(out: &mut String, ctx: &Ctx, parent: &str, enumeration: &EnumDescriptorProto, path: &[i32]) {
    let full = format!("{parent}.{}", enumeration.name());
    let display = full.strip_prefix(&format!("{}.", ctx.package)).unwrap_or(&full);
    heading(out, 4, &full, display);
    if let Some(text) = ctx.comments.block(path) {
        let _ = writeln!(out, "{text}\n");
    }
    out.push_str("| Value | Number | Description |\n|---|---|---|\n");
    for (i, value) in enumeration.value.iter().enumerate() {
        let mut value_path = path.to_vec();
        value_path.extend([ENUM_VALUE, i as i32]);
        let _ = writeln!(out, "| `{}` | {} | {} |", value.name(), value.number(), ctx.comments.cell(&value_path));
    }
    out.push('\n');
}

/// The type column: `repeated T`, `optional T`, `map<K, V>` or `T`.
fn field_type(ctx: &Ctx, field: &FieldDescriptorProto) -> String {
    if field.label() == Label::Repeated {
        if let Some(entry) = ctx.map_entries.get(field.type_name()) {
            let key = entry.field.iter().find(|f| f.number() == 1).expect("map key");
            let value = entry.field.iter().find(|f| f.number() == 2).expect("map value");
            return format!("`map<{}, {}>`", scalar_or_name(ctx, key), scalar_or_name(ctx, value));
        }
        return format!("repeated {}", base_type(ctx, field));
    }
    if field.proto3_optional() {
        return format!("optional {}", base_type(ctx, field));
    }
    base_type(ctx, field)
}

/// A scalar as `int64`, a message or enum as a link when it is in this package.
fn base_type(ctx: &Ctx, field: &FieldDescriptorProto) -> String {
    match field.r#type() {
        Type::Message | Type::Enum | Type::Group => type_link(ctx, field.type_name()),
        _ => format!("`{}`", scalar_name(field.r#type())),
    }
}

fn scalar_or_name(ctx: &Ctx, field: &FieldDescriptorProto) -> String {
    match field.r#type() {
        Type::Message | Type::Enum | Type::Group => short_name(ctx, field.type_name()),
        _ => scalar_name(field.r#type()).to_owned(),
    }
}

fn scalar_name(ty: Type) -> &'static str {
    match ty {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Message | Type::Enum | Type::Group => unreachable!("not a scalar"),
    }
}

/// A type name relative to the package when it is in it ("User"), else in full ("google.protobuf.Timestamp").
fn short_name(ctx: &Ctx, type_name: &str) -> String {
    let full = type_name.trim_start_matches('.');
    full.strip_prefix(&format!("{}.", ctx.package)).unwrap_or(full).to_owned()
}

/// A type as a link to its section when this reference documents it, else as code.
fn type_link(ctx: &Ctx, type_name: &str) -> String {
    let full = type_name.trim_start_matches('.');
    let short = short_name(ctx, type_name);
    if full.starts_with("courier.") {
        format!("[`{short}`](#{})", anchor(full))
    } else {
        format!("`{short}`")
    }
}
