//! Logins, roles and TLS against the real binary, as a hostile client sees them:
//! wrong passwords, unknown roles, a reader writing, a non-superuser managing roles,
//! rights revoked under an open session, roles across a restart, trust limited to
//! loopback, and TLS with psql (`sslmode=require`, `verify-full`, channel binding).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::server::DiffmartProcess;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const READY: Duration = Duration::from_secs(60);
const ROOT_PASSWORD: &str = "correct horse battery staple";

async fn login(port: u16, user: &str, password: Option<&str>) -> Result<Client, tokio_postgres::Error> {
    let mut config = format!("host=127.0.0.1 port={port} user={user} dbname=dev connect_timeout=5");
    if let Some(password) = password {
        config.push_str(&format!(" password='{password}'"));
    }
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn code(error: &tokio_postgres::Error) -> String {
    error.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

async fn refused_login(port: u16, user: &str, password: Option<&str>) -> String {
    match login(port, user, password).await {
        Ok(_) => panic!("{user} logged in with {password:?}"),
        Err(e) => code(&e),
    }
}

async fn refused(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{sql} succeeded"),
        Err(e) => code(&e),
    }
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

const INVENTORY_ROW: &str = "INSERT INTO product_inventory VALUES (7, 'seven', 1, 1, 'S', 7.00)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_checked_and_each_role_does_only_what_it_was_granted() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--no-generator", "--root-password", ROOT_PASSWORD];
    let mut server = DiffmartProcess::start_on(dir.path(), &args);
    server.wait_ready(READY).await;
    let port = server.pg_port;

    assert_eq!(refused_login(port, "root", Some("wrong")).await, SqlState::INVALID_PASSWORD.code());
    assert_eq!(refused_login(port, "nobody", Some("wrong")).await, SqlState::INVALID_PASSWORD.code());
    assert!(login(port, "root", None).await.is_err(), "root logged in without a password");

    let root = server.connect().await;
    for sql in [
        "CREATE ROLE reader LOGIN PASSWORD 'reader-pw'",
        "CREATE USER writer PASSWORD 'writer-pw'",
        "CREATE ROLE nobody_in_particular LOGIN PASSWORD 'plain-pw'",
        "CREATE ROLE cannot_log_in PASSWORD 'nologin-pw'",
        "GRANT pg_read_all_data TO reader",
        "GRANT pg_write_all_data TO writer",
    ] {
        root.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // The extended protocol (a prepared statement) runs role statements too.
    root.execute("CREATE ROLE extended LOGIN PASSWORD 'extended-pw'", &[]).await.unwrap();
    assert_eq!(refused(&root, "CREATE ROLE reader").await, SqlState::DUPLICATE_OBJECT.code());
    assert_eq!(refused(&root, "GRANT SELECT ON orders TO reader").await, SqlState::FEATURE_NOT_SUPPORTED.code());
    assert_eq!(refused(&root, "DROP ROLE root").await, SqlState::INSUFFICIENT_PRIVILEGE.code());
    assert_eq!(refused_login(port, "cannot_log_in", Some("nologin-pw")).await, SqlState::INVALID_PASSWORD.code());
    assert_eq!(refused_login(port, "reader", Some("writer-pw")).await, SqlState::INVALID_PASSWORD.code());

    let reader = login(port, "reader", Some("reader-pw")).await.unwrap();
    assert_eq!(count(&reader, "SELECT count(*) FROM product_inventory").await, 0);
    for sql in [
        INVENTORY_ROW,
        "UPDATE product_inventory SET stock_level = 0",
        "DELETE FROM price_overrides",
        "CREATE ROLE sneaky LOGIN PASSWORD 'x'",
        "GRANT pg_write_all_data TO reader",
        "ALTER ROLE writer PASSWORD 'mine-now'",
        "DROP ROLE writer",
    ] {
        assert_eq!(refused(&reader, sql).await, SqlState::INSUFFICIENT_PRIVILEGE.code(), "{sql}");
    }
    let prepared = reader.prepare(INVENTORY_ROW).await;
    let refusal = match prepared {
        Ok(statement) => reader.execute(&statement, &[]).await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(code(&refusal), SqlState::INSUFFICIENT_PRIVILEGE.code());

    let writer = login(port, "writer", Some("writer-pw")).await.unwrap();
    assert_eq!(writer.execute(INVENTORY_ROW, &[]).await.unwrap(), 1);
    assert_eq!(count(&reader, "SELECT count(*) FROM product_inventory").await, 1);
    assert_eq!(refused(&writer, "CREATE ROLE sneaky").await, SqlState::INSUFFICIENT_PRIVILEGE.code());

    // Logged in, but granted nothing: the catalog, not the data.
    let plain = login(port, "nobody_in_particular", Some("plain-pw")).await.unwrap();
    assert_eq!(count(&plain, "SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = 'reader'").await, 1);
    assert_eq!(refused(&plain, "SELECT * FROM product_inventory").await, SqlState::INSUFFICIENT_PRIVILEGE.code());
    assert_eq!(refused(&plain, "SELECT * FROM purchases").await, SqlState::INSUFFICIENT_PRIVILEGE.code());

    // A REVOKE applies to a session that is already open.
    root.batch_execute("REVOKE pg_read_all_data FROM reader").await.unwrap();
    assert_eq!(refused(&reader, "SELECT * FROM product_inventory").await, SqlState::INSUFFICIENT_PRIVILEGE.code());
    root.batch_execute("GRANT pg_read_all_data TO reader").await.unwrap();
    assert_eq!(count(&reader, "SELECT count(*) FROM product_inventory").await, 1);

    // A role changes its own password.
    reader.batch_execute("ALTER ROLE reader PASSWORD 'reader-pw-2'").await.unwrap();
    assert_eq!(refused_login(port, "reader", Some("reader-pw")).await, SqlState::INVALID_PASSWORD.code());
    login(port, "reader", Some("reader-pw-2")).await.unwrap();
    root.batch_execute("DROP ROLE extended").await.unwrap();
    assert_eq!(refused_login(port, "extended", Some("extended-pw")).await, SqlState::INVALID_PASSWORD.code());

    // libpq (psql) speaks SCRAM-SHA-256 with the server.
    let psql = psql(port, "reader", "reader-pw-2", "", "SELECT count(*) FROM product_inventory");
    assert_eq!(psql.trim(), "1");

    // Roles are kept in the data directory, without their passwords.
    let roles_file = dir.path().join("roles.json");
    let kept = std::fs::read_to_string(&roles_file).unwrap();
    for secret in ["reader-pw", "writer-pw", "plain-pw", ROOT_PASSWORD] {
        assert!(!kept.contains(secret), "roles.json holds a password: {kept}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&roles_file).unwrap().permissions().mode() & 0o777, 0o600);

    // After a restart with a new root password: the roles and their rights are back,
    // and root's old password no longer works.
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(60)).is_some_and(|s| s.success()), "{}", server.stderr());
    let mut server = DiffmartProcess::start_on(dir.path(), &["--no-generator", "--root-password", "a new one"]);
    server.wait_ready(READY).await;
    let port = server.pg_port;
    assert_eq!(refused_login(port, "root", Some(ROOT_PASSWORD)).await, SqlState::INVALID_PASSWORD.code());
    let reader = login(port, "reader", Some("reader-pw-2")).await.unwrap();
    assert_eq!(count(&reader, "SELECT count(*) FROM product_inventory").await, 1);
    assert_eq!(refused(&reader, INVENTORY_ROW).await, SqlState::INSUFFICIENT_PRIVILEGE.code());
    let writer = login(port, "writer", Some("writer-pw")).await.unwrap();
    assert_eq!(writer.execute("DELETE FROM product_inventory WHERE product_id = 7", &[]).await.unwrap(), 1);
    assert_eq!(count(&server.connect().await, "SELECT count(*) FROM product_inventory").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_password_the_server_trusts_loopback_only() {
    // On a non-loopback address it refuses to start…
    let refusal = Command::new(env!("CARGO_BIN_EXE_diffmart"))
        .args(["--ephemeral", "--no-generator", "--pg-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!refusal.status.success());
    let said = String::from_utf8_lossy(&refusal.stderr);
    assert!(said.contains("without a password") && said.contains("--insecure"), "{said}");

    // …unless told to, or given a password.
    for extra in [&["--insecure"][..], &["--root-password", "pw"][..]] {
        let port = support::free_port();
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut server = Command::new(env!("CARGO_BIN_EXE_diffmart"))
            .args(["--ephemeral", "--no-generator", "--http-listen", "127.0.0.1:0"])
            .args(["--pg-listen", &format!("0.0.0.0:{port}")])
            .args(extra)
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        let password = extra.contains(&"pw").then_some("pw");
        let deadline = std::time::Instant::now() + READY;
        while login(port, "root", password).await.is_err() {
            let said = || std::fs::read_to_string(stderr.path()).unwrap();
            assert!(server.try_wait().unwrap().is_none(), "{extra:?}: exited: {}", said());
            assert!(std::time::Instant::now() < deadline, "{extra:?}: not serving: {}", said());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.kill().unwrap();
        server.wait().unwrap();
    }

    // On loopback, a client is trusted as the role it names, which must exist and log in.
    let mut server = DiffmartProcess::start(&["--no-generator"]);
    server.wait_ready(READY).await;
    let root = server.connect().await;
    root.batch_execute("CREATE ROLE viewer LOGIN; CREATE ROLE group_only; GRANT pg_read_all_data TO viewer")
        .await
        .unwrap();
    assert_eq!(
        refused_login(server.pg_port, "stranger", None).await,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION.code()
    );
    assert_eq!(
        refused_login(server.pg_port, "group_only", None).await,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION.code()
    );
    let viewer = login(server.pg_port, "viewer", None).await.unwrap();
    assert_eq!(count(&viewer, "SELECT count(*) FROM product_inventory").await, 0);
    assert_eq!(refused(&viewer, INVENTORY_ROW).await, SqlState::INSUFFICIENT_PRIVILEGE.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_over_tls_and_verifies_the_server() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let args = [
        "--no-generator",
        "--root-password",
        ROOT_PASSWORD,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let mut server = DiffmartProcess::start(&args);
    server.wait_ready(READY).await;
    let ca = dir.path().join("ca.pem");
    let verify_full = format!("sslmode=verify-full sslrootcert={} host=localhost hostaddr=127.0.0.1", ca.display());
    for options in ["sslmode=require", "sslmode=require channel_binding=require", verify_full.as_str()] {
        let answer = psql(server.pg_port, "root", ROOT_PASSWORD, options, "SELECT 40 + 2");
        assert_eq!(answer.trim(), "42", "{options}");
    }
    // A client that trusts another authority refuses the server.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    make_certificates(&other);
    let wrong_ca =
        format!("sslmode=verify-full sslrootcert={} host=localhost hostaddr=127.0.0.1", other.join("ca.pem").display());
    let refused = psql_output(server.pg_port, "root", ROOT_PASSWORD, &wrong_ca, "SELECT 1");
    assert!(!refused.status.success(), "verify-full accepted a certificate of another authority");
    // A bad key stops start-up with a clear error.
    let bad = Command::new(env!("CARGO_BIN_EXE_diffmart"))
        .args(["--ephemeral", "--no-generator", "--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--tls-key"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// A certificate authority and a server certificate for `localhost` it signed, made by openssl(1).
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=diffmart test CA"]
        .iter()
        .chain(&["-keyout", "ca.key", "-out", "ca.pem"])
        .copied()
        .collect::<Vec<_>>());
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "server.pem",
    ]);
}

fn psql_output(port: u16, user: &str, password: &str, options: &str, sql: &str) -> std::process::Output {
    let conninfo = format!("host=127.0.0.1 port={port} user={user} dbname=dev connect_timeout=10 {options}");
    Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &conninfo, "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql runs")
}

fn psql(port: u16, user: &str, password: &str, options: &str, sql: &str) -> String {
    let out = psql_output(port, user, password, options, sql);
    assert!(out.status.success(), "psql {options}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
