//! The README's commands, run as printed against a real `courier up`: only the address and the data dir are the
//! test's own (127.0.0.1:50051 and ./courier-data may be taken on the machine running the tests). And the README
//! as the front door: every relative link and anchor in it and in docs/ resolves, and it links every docs/ page.

use std::path::{Path, PathBuf};
use std::process::Command;

use courier_tests::process::CourierProcess;

const BIN: &str = env!("CARGO_BIN_EXE_courier");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The lines of the first ```sh block after `heading`, up to the first line starting with `stop` (a comment that
/// introduces commands the test does not run).
fn readme_block(heading: &str, stop: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find(heading).unwrap_or_else(|| panic!("README has no {heading:?}"))..];
    let block = &section[section.find("```sh\n").expect("a sh block") + 6..];
    let block = &block[..block.find("```").expect("the block ends")];
    block.lines().take_while(|line| !line.starts_with(stop)).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn the_curl_example_creates_a_user_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let up =
        CourierProcess::start(BIN, &["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", data]);
    let script = readme_block("### With curl (REST", "#")
        .replace("127.0.0.1:50051", &up.addr)
        .replace("courier-data/", &format!("{data}/"));
    let output = Command::new("bash").args(["-euo", "pipefail", "-c", &script]).output().expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the README's curl block failed:\n{script}\n{output:?}");
    assert!(stdout.contains(r#""email":"alan@example.com""#), "no user in the answer:\n{stdout}");
}

#[tokio::test]
async fn the_buf_curl_examples_work_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let up =
        CourierProcess::start(BIN, &["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", data]);
    let script = readme_block("### With buf curl", "# grpcurl")
        .replace("127.0.0.1:50051", &up.addr)
        .replace("courier-data/", &format!("{data}/"));
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(repo_root())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the README's buf curl block failed:\n{script}\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("courier.users.v1.UserService"), "no service listed:\n{stdout}");
    assert!(stdout.contains("Grace Hopper"), "the created user is not in the answers:\n{stdout}");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// A markdown file's anchors (its headings, as GitHub names them, and `<a id="...">`) and its links.
fn anchors_and_links(path: &Path) -> (Vec<String>, Vec<String>) {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut anchors, mut links, mut heading) = (Vec::<String>::new(), Vec::new(), None::<String>);
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for event in Parser::new(&text) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) if heading.is_some() => heading.as_mut().unwrap().push_str(&t),
            Event::End(TagEnd::Heading(_)) => {
                // A repeated heading gets -1, -2, ... as on GitHub.
                let base = slug(&heading.take().unwrap());
                let count = seen.entry(base.clone()).or_default();
                anchors.push(if *count == 0 { base.clone() } else { format!("{base}-{count}") });
                *count += 1;
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                for part in html.split("<a id=\"").skip(1) {
                    anchors.push(part.split('"').next().unwrap().to_string());
                }
            }
            Event::Start(Tag::Link { dest_url, .. }) => links.push(dest_url.to_string()),
            _ => {}
        }
    }
    (anchors, links)
}

#[test]
fn every_link_in_the_readme_and_docs_resolves_and_the_readme_links_every_doc() {
    let root = repo_root();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    let mut broken = Vec::new();
    let (_, readme_links) = anchors_and_links(&root.join("README.md"));
    for doc in &docs {
        let name = format!("docs/{}", doc.file_name().unwrap().to_str().unwrap());
        if !readme_links.iter().any(|link| link.split('#').next() == Some(name.as_str())) {
            broken.push(format!("README.md does not link {name}"));
        }
    }
    for file in std::iter::once(root.join("README.md")).chain(docs.iter().cloned()) {
        let (own_anchors, links) = anchors_and_links(&file);
        for link in links.iter().filter(|link| !link.contains("://") && !link.starts_with("mailto:")) {
            let (path, fragment) = link.split_once('#').unwrap_or((link, ""));
            let target = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            let shown = file.strip_prefix(&root).unwrap().display();
            if !target.exists() {
                broken.push(format!("{shown}: {link}: no such file"));
            } else if !fragment.is_empty() && target.extension().is_some_and(|ext| ext == "md") {
                let anchors = if path.is_empty() { own_anchors.clone() } else { anchors_and_links(&target).0 };
                if !anchors.iter().any(|anchor| anchor == fragment) {
                    broken.push(format!("{shown}: {link}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
