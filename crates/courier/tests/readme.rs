//! The README's commands, run as printed against a real `courier up`: only the address and the data dir are the
//! test's own (127.0.0.1:50051 and ./courier-data may be taken on the machine running the tests).

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
