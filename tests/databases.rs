//! Database dumps end to end with real servers (PostgreSQL 15 and MariaDB from Debian's packages,
//! in the image `.ci/peers.sh` builds with debootstrap) and SQLite: rows written, a backup with
//! the dump streamed in, the database dropped, `restore-db`, the rows compared; the README's
//! restore by hand (`zstd -dc | tar -xO | psql`); a target that holds tables refused without
//! `--force`; a plain restore never touching a database; a dump tool that fails mid-stream
//! leaving nothing listed and naming itself; no dump byte on a disk or in a volume while it
//! streams; a dump altered in the store refused before the database sees it.

mod common;

use std::path::Path;
use std::process::Command;

use common::dest::Dest;
use common::{docker, unique, App};
use serde_json::Value;
use sha2::Digest;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn db_image() -> String {
    common::peers::var("DOCKYARD_TEST_DB_IMAGE")
}

/// A database server container (removed with its volumes when dropped): `run-postgres` or
/// `run-mariadb` of the test image, with `env`, ready when returned.
fn server(what: &str, run: &str, env: &[&str]) -> App {
    let name = unique(what);
    let image = db_image();
    let mut args = vec!["run", "-d", "--name", &name, "--network", "none"];
    for e in env {
        args.extend(["-e", e]);
    }
    args.extend([image.as_str(), run]);
    docker(&args);
    let app = App::named(name);
    let ready = if run == "run-postgres" {
        "ready-postgres"
    } else {
        "ready-mariadb"
    };
    docker(&["exec", &app.name, ready]);
    app
}

/// `psql` as postgres in `db` against database `database`; its unaligned, tuples-only output.
fn psql(db: &App, database: &str, sql: &str) -> String {
    docker(&[
        "exec",
        "-u",
        "postgres",
        &db.name,
        "psql",
        "-XAtq",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        database,
        "-c",
        sql,
    ])
}

/// `mariadb` as root in `db`; its batch output without column names.
fn mariadb(db: &App, sql: &str) -> String {
    docker(&["exec", &db.name, "mariadb", "-N", "-B", "-e", sql])
}

/// The rows a user compares: ids, text with quotes, newlines, tabs and non-ASCII, and bytes.
const ROWS: &str = "select id, body, md5(data) from notes order by id";

const PG_SCHEMA: &str = "create table notes (id int primary key, body text, data bytea);
    insert into notes select g, 'note ' || g || E' it''s\\t\\\\ \\n naïve ✓', decode(md5(g::text), 'hex') from generate_series(1, 5000) g;
    create index on notes (body);";

/// A backed-up app with a media volume, and a backup of it with `dumps` to `dest`; the JSON.
fn backup(dest: &Dest, app: &App, dumps: &[&str]) -> Value {
    let mut args = vec!["backup", &app.name, "--to", "", "--json", "--no-progress"];
    let url = dest.url();
    args[3] = &url;
    for d in dumps {
        args.extend(["--dump", d]);
    }
    let r = dest.run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    json(&r.stdout)
}

/// The databases of PostgreSQL server `db`, one a line.
fn databases(db: &App) -> String {
    psql(
        db,
        "template1",
        "select datname from pg_database order by 1",
    )
}

/// `restore-db` of backup `id` at `dest` (`--dump which`, with `extra`), stopped at fault point
/// `point`.
fn faulted_restore_db(
    dest: &Dest,
    which: &str,
    id: &str,
    extra: &[&str],
    point: &str,
) -> common::fault::Faulted {
    let url = dest.url();
    let mut args = vec!["restore-db", id, "--from", &url, "--dump", which];
    args.extend_from_slice(extra);
    let mut run = common::fault::Faulted::start(&args, point, &[]);
    run.reached(point);
    run
}

/// `restore-db` of dump `from` (`--dump from`: `CONTAINER[/FILE]`) at `dest`, with `args`.
fn restore_db(dest: &Dest, from: &str, args: &[&str]) -> common::Run {
    let url = dest.url();
    let mut all = vec![
        "restore-db",
        "--from",
        &url,
        "--no-progress",
        "--dump",
        from,
    ];
    all.extend_from_slice(args);
    dest.run(&all)
}

#[test]
fn postgres_rows_come_back_after_the_database_is_dropped() {
    let db = server("pg", "run-postgres", &[]);
    let app = App::running("pg-app", &["/srv/media"]);
    app.sh("echo upload > /srv/media/photo.jpg");
    docker(&["exec", "-u", "postgres", &db.name, "createdb", "app"]);
    psql(&db, "app", PG_SCHEMA);
    let before = psql(&db, "app", ROWS);
    assert_eq!(psql(&db, "app", "select count(*) from notes"), "5000\n");
    let dest = Dest::local();
    let spec = format!("{}:postgres:app", db.name);
    let done = backup(&dest, &app, &[&spec]);
    let m = &done["backup"];
    let dump = &m["dumps"][0];
    assert_eq!(dump["kind"], "postgres");
    assert_eq!(dump["database"], "app");
    assert_eq!(dump["parts"], 1);
    let part = format!("dumps/{}/app.sql.00000", db.name);
    let names = dest.archive_names(m);
    assert_eq!(names[0], part, "dumps come first: {names:?}");
    assert!(
        names.contains(&"srv/media/photo.jpg".to_string()),
        "{names:?}"
    );
    assert_eq!(m["entries"].as_u64().unwrap() as usize, names.len());
    let id = m["id"].as_str().unwrap();
    let app_sql = format!("{}/app.sql", db.name);
    dest.run(&["verify", id, "--to", &dest.url()]).ok();

    // The container a load goes into is named on the command line, never by the manifest alone.
    let unnamed = dest.run(&["restore-db", id, "--from", &dest.url()]);
    assert_eq!(unnamed.code, 2, "{}", unnamed.stderr);
    assert!(
        unnamed
            .stderr
            .contains(&format!("--dump {}/app.sql", db.name)),
        "{}",
        unnamed.stderr
    );

    // So is the database: by the dump's file, or --database; never by the manifest alone.
    let unnamed = restore_db(&dest, &db.name, &[id]);
    assert_eq!(unnamed.code, 2, "{}", unnamed.stderr);
    assert!(
        unnamed
            .stderr
            .contains(&format!("--dump {app_sql} or --database NAME")),
        "{}",
        unnamed.stderr
    );

    // The database holds tables: refused, and a dry run says so; nothing changes.
    let refused = restore_db(&dest, &app_sql, &[id]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("not empty (tables 1)") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    let dry = restore_db(&dest, &app_sql, &[id, "--dry-run", "--json"]);
    let dry = json(&dry.ok());
    assert_eq!(
        (dry["would_refuse"].as_bool(), dry["target_before"].as_str()),
        (Some(true), Some("tables 1"))
    );

    // A plain restore of the volumes leaves the database alone.
    psql(
        &db,
        "app",
        "insert into notes values (9999, 'after the backup', null)",
    );
    let r = dest.run(&[
        "restore",
        &app.name,
        "--backup",
        id,
        "--from",
        &dest.url(),
        "--no-safety-backup",
        "--no-progress",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(psql(&db, "app", "select count(*) from notes"), "5001\n");

    // Dropped, then restored: the same rows.
    docker(&["exec", "-u", "postgres", &db.name, "dropdb", "app"]);
    let loaded = restore_db(&dest, &app_sql, &[id, "--json"]);
    let loaded = json(&loaded.ok());
    assert_eq!(loaded["target_before"], "absent");
    assert_eq!(psql(&db, "app", ROWS), before);

    // Into another database, and over a full one with --force (only once it loaded whole).
    restore_db(&dest, &app_sql, &[id, "--database", "app_copy"]).ok();
    assert_eq!(psql(&db, "app_copy", ROWS), before);
    psql(&db, "app", "delete from notes where id > 10");
    restore_db(&dest, &app_sql, &[id, "--force"]).ok();
    assert_eq!(psql(&db, "app", ROWS), before);
    let dbs = databases(&db);
    assert!(!dbs.contains("dockyard_restore"), "{dbs}");

    // Killed once the dump loaded beside the target: the target is as it was; the next run
    // loads it again and leaves no stand-in behind.
    psql(&db, "app", "delete from notes where id > 10");
    let url = dest.url();
    let run = faulted_restore_db(&dest, &app_sql, id, &["--force"], "dump-loaded");
    run.signal("KILL");
    run.finish();
    assert_eq!(psql(&db, "app", "select count(*) from notes"), "10\n");
    restore_db(&dest, &app_sql, &[id, "--force"]).ok();
    assert_eq!(psql(&db, "app", ROWS), before);
    let dbs = databases(&db);
    assert!(!dbs.contains("dockyard_restore"), "{dbs}");

    // Sessions on the target (the app) and on the loaded database (a monitoring tool) when it
    // takes the target's place: they are ended, and the target is replaced, never lost.
    psql(&db, "app", "delete from notes where id > 10");
    let run = faulted_restore_db(&dest, &app_sql, id, &["--force"], "dump-loaded");
    let sum = docker(&[
        "exec",
        &db.name,
        "sh",
        "-c",
        "printf %s app | cksum | cut -d ' ' -f 1",
    ]);
    for database in [
        "app".to_string(),
        format!("dockyard_restore_{}", sum.trim()),
    ] {
        docker(&[
            "exec",
            "-d",
            "-u",
            "postgres",
            &db.name,
            "psql",
            "-d",
            &database,
            "-c",
            "select pg_sleep(600)",
        ]);
    }
    common::wait_until("both sessions", std::time::Duration::from_secs(60), || {
        psql(&db, "postgres", "select count(*) from pg_stat_activity where query like '%pg_sleep(600)%' and pid <> pg_backend_pid()") == "2\n"
    });
    run.release("dump-loaded");
    let (code, stderr) = run.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(psql(&db, "app", ROWS), before);
    let dbs = databases(&db);
    assert!(!dbs.contains("dockyard_"), "{dbs}");

    // pg_dump's own failure fails the backup, in its words.
    let r = dest.run(&[
        "backup",
        &app.name,
        "--to",
        &url,
        "--dump",
        &format!("{}:postgres:nosuch", db.name),
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("\"nosuch\" does not exist"),
        "{}",
        r.stderr
    );

    // The README's recipe by hand: the parts joined by tar, into psql.
    docker(&["exec", "-u", "postgres", &db.name, "createdb", "by_hand"]);
    let archive = Path::new(&dest.url()).join(m["archive"].as_str().unwrap());
    let script = format!(
        "zstd -dc {} | tar -xO --wildcards 'dumps/{}/app.sql.*' | docker exec -i -u postgres {} psql -Xq -v ON_ERROR_STOP=1 -d by_hand >/dev/null",
        archive.display(),
        db.name,
        db.name
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(psql(&db, "by_hand", ROWS), before);
}

#[test]
fn mariadb_rows_come_back_and_a_full_database_needs_force() {
    // MARIADB_DATABASE names the database: `--dump CONTAINER:mariadb` without one dumps it.
    let db = server("maria", "run-mariadb", &["MARIADB_DATABASE=shop"]);
    let app = App::running("maria-app", &["/srv/media"]);
    mariadb(
        &db,
        "create database shop; use shop; create table shop.notes (id int primary key, body text, data blob);
         insert into shop.notes select seq, concat('note ', seq, ' it''s\t\\\\ naïve ✓'), unhex(md5(seq)) from seq_1_to_3000;",
    );
    let rows = "select id, body, md5(data) from shop.notes order by id";
    let before = mariadb(&db, rows);
    let dest = Dest::local();
    let done = backup(&dest, &app, &[&format!("{}:mariadb", db.name)]);
    let m = &done["backup"];
    assert_eq!(m["dumps"][0]["file"], "default.sql");
    assert!(m["dumps"][0].get("database").is_none(), "{m}");
    let id = m["id"].as_str().unwrap();
    let default_sql = format!("{}/default.sql", db.name);

    let refused = restore_db(&dest, &default_sql, &[id]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("not empty"), "{}", refused.stderr);
    assert_eq!(mariadb(&db, rows), before);

    mariadb(&db, "drop database shop");
    restore_db(&dest, &default_sql, &[id]).ok();
    assert_eq!(mariadb(&db, rows), before);

    mariadb(&db, "delete from shop.notes where id > 5");
    restore_db(&dest, &default_sql, &[id, "--force"]).ok();
    assert_eq!(mariadb(&db, rows), before);

    // Into another database of another server.
    let other = server("maria2", "run-mariadb", &[]);
    restore_db(
        &dest,
        &default_sql,
        &[id, "--into", &other.name, "--database", "shop_copy"],
    )
    .ok();
    assert_eq!(
        mariadb(&other, &rows.replace("shop.", "shop_copy.")),
        before
    );
}

#[test]
fn sqlite_in_the_app_container_comes_back_through_python() {
    // The Gunicorn image has python3 and no sqlite3 tool: the dump and the load use Python's
    // sqlite3 module.
    let image = common::peers::var("DOCKYARD_TEST_GUNICORN_IMAGE");
    let app = App::create_with("lite", &["-v", "/srv/data"], &image);
    app.start();
    let make = "import sqlite3; c = sqlite3.connect('/srv/data/db.sqlite3'); \
        c.execute('create table notes (id integer primary key, body text)'); \
        c.executemany('insert into notes values (?, ?)', [(i, 'note %d it''s naïve' % i) for i in range(2000)]); c.commit()";
    app.sh(&format!("python3 -c \"{make}\""));
    let rows = "python3 -c \"import sqlite3; print(list(sqlite3.connect('/srv/data/db.sqlite3').execute('select * from notes order by id')))\"";
    let before = app.sh(rows);
    let dest = Dest::local();
    let done = backup(
        &dest,
        &app,
        &[&format!("{}:sqlite:/srv/data/db.sqlite3", app.name)],
    );
    let m = &done["backup"];
    assert_eq!(m["dumps"][0]["path"], "/srv/data/db.sqlite3");
    let id = m["id"].as_str().unwrap();
    app.sh("rm /srv/data/db.sqlite3");
    restore_db(
        &dest,
        &app.name,
        &[id, "--database", "/srv/data/db.sqlite3"],
    )
    .ok();
    assert_eq!(app.sh(rows), before);
    assert_eq!(app.sh("ls /srv/data"), "db.sqlite3\n");
}

/// Whether `needle` is in any file below `dir` (following nothing).
fn found_below(dir: &Path, needle: &[u8]) -> Option<String> {
    let out = Command::new("grep")
        .args(["-rlF", "--no-messages"])
        .arg(std::str::from_utf8(needle).unwrap())
        .arg(dir)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!listed.is_empty()).then_some(listed)
}

#[test]
fn a_dump_is_never_on_a_disk_and_one_that_fails_leaves_nothing_listed() {
    let db = App::running("dumper", &["/var/lib/db"]);
    let app = App::running("dumped-app", &["/srv/media"]);
    app.sh("echo upload > /srv/media/a");
    let dest = Dest::local();
    let tmp = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let env = [
        ("TMPDIR", tmp.path().to_str().unwrap()),
        ("DOCKYARD_STATE_DIR", state.path().to_str().unwrap()),
    ];
    // 40 MB of a marker: five parts, all streamed by the time the archive is written.
    let marker = format!("dyt-marker-{}", unique("m"));
    let spec = format!("{}:exec:yes {marker} | head -c 40000000", db.name);
    let point = format!("written-{}", app.name);
    let url = dest.url();
    let mut run = common::fault::Faulted::start(
        &["backup", &app.name, "--to", &url, "--dump", &spec, "--json"],
        &point,
        &env,
    );
    run.reached(&point);
    for dir in [
        tmp.path().to_path_buf(),
        state.path().to_path_buf(),
        app.mount_source("/srv/media"),
        db.mount_source("/var/lib/db"),
    ] {
        assert_eq!(
            found_below(&dir, marker.as_bytes()),
            None,
            "{}",
            dir.display()
        );
    }
    let in_db = db.sh(&format!(
        "grep -rlF {marker} /tmp /var /root 2>/dev/null || true"
    ));
    assert_eq!(in_db, "");
    run.release(&point);
    let (code, _) = run.finish();
    assert_eq!(code, 0);
    let listed = json(&dest.run(&["list", "--to", &url, "--json"]).ok());
    let m = &listed["backups"][0];
    assert_eq!(m["dumps"][0]["parts"], 5);
    assert_eq!(m["dumps"][0]["size"], 40_000_000);

    // Killed mid-dump, the tool still writing: nothing listed; the next run sweeps what it left.
    let mut run = common::fault::Faulted::start(
        &["backup", &app.name, "--to", &url, "--dump", &spec],
        "dump-part-written",
        &env,
    );
    run.reached("dump-part-written");
    run.signal("KILL");
    run.finish();
    let listed = json(&dest.run(&["list", "--to", &url, "--json"]).ok());
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1, "{listed}");
    let again = json(
        &dest
            .run(&["backup", &app.name, "--to", &url, "--dump", &spec, "--json"])
            .ok(),
    );
    let again = again["backup"]["id"].as_str().unwrap().to_string();
    dest.run(&["verify", &again, "--to", &url]).ok();
    assert_eq!(dest.names().len(), 6, "{:?}", dest.names());

    // A dump tool that fails after writing 20 MB: the backup fails naming it and what it said
    // last, and the destination lists only the backup before.
    let failing = format!(
        "{}:exec:yes row | head -c 20000000; echo 'pg_dump: error: connection lost' >&2; exit 3",
        db.name
    );
    let r = dest.run(&["backup", &app.name, "--to", &url, "--dump", &failing]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    for want in [
        db.name.as_str(),
        "exit code 3",
        "pg_dump: error: connection lost",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
    assert!(
        !r.stderr.contains("yes row"),
        "the command is never shown: {}",
        r.stderr
    );
    let listed = json(&dest.run(&["list", "--to", &url, "--json"]).ok());
    assert_eq!(listed["backups"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(dest.names().len(), 6, "{:?}", dest.names());

    // A dump tool that goes silent: the backup fails after --helper-timeout, and the tool is
    // stopped, not left holding its database.
    let r = dest.run(&[
        "backup",
        &app.name,
        "--to",
        &url,
        "--helper-timeout",
        "5s",
        "--dump",
        &format!("{}:exec:exec sleep 4321", db.name),
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("wrote nothing for 5s"), "{}", r.stderr);
    common::wait_until(
        "the silent dump tool to be stopped",
        std::time::Duration::from_secs(60),
        || !db.sh("ps").contains("sleep 4321"),
    );

    // A database container that is stopped around the backup cannot be dumped: refused before
    // anything is stopped.
    let r = dest.run(&[
        "backup",
        &app.name,
        "--to",
        &url,
        "--dump",
        &spec,
        "--stop",
        "--stop-also",
        &db.name,
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("needs it running"), "{}", r.stderr);
}

#[test]
fn a_dump_altered_in_the_store_never_reaches_the_database() {
    let db = server("pg-forged", "run-postgres", &[]);
    let app = App::running("pg-forged-app", &["/srv/media"]);
    docker(&["exec", "-u", "postgres", &db.name, "createdb", "app"]);
    psql(
        &db,
        "app",
        "create table t (v text); insert into t values ('genuine')",
    );
    let dest = Dest::local();
    let done = backup(&dest, &app, &[&format!("{}:postgres:app", db.name)]);
    let m = &done["backup"];
    let id = m["id"].as_str().unwrap();
    // Whoever holds the store rewrites the row in the dump and fixes the archive's checksum
    // and size in the manifest (not the dump's own).
    let name = m["archive"].as_str().unwrap();
    let tar = zstd::decode_all(&dest.read(name)[..]).unwrap();
    let at = tar
        .windows(7)
        .position(|w| w == b"genuine")
        .expect("the row is in the dump");
    let mut forged = tar.clone();
    forged[at..at + 7].copy_from_slice(b"forged!");
    let zst = zstd::encode_all(&forged[..], 3).unwrap();
    dest.replace(name, &zst);
    let mut fixed = m.clone();
    fixed["sha256"] = Value::from(hex::encode(sha2::Sha256::digest(&zst)));
    fixed["size"] = Value::from(zst.len());
    dest.replace(
        &format!("{id}.json"),
        &serde_json::to_vec_pretty(&fixed).unwrap(),
    );
    docker(&["exec", "-u", "postgres", &db.name, "dropdb", "app"]);
    let r = restore_db(&dest, &format!("{}/app.sql", db.name), &[id]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("does not match its manifest"),
        "{}",
        r.stderr
    );
    let dbs = databases(&db);
    assert!(!dbs.contains("app") && !dbs.contains("dockyard"), "{dbs}");
}

#[test]
fn dumps_ride_along_incremental_and_engine_endpoint_backups() {
    let db = App::running("dump-any", &[]);
    let app = App::running("dump-any-app", &["/srv/media"]);
    app.sh("echo one > /srv/media/a");
    let dest = Dest::local();
    let url = dest.url();
    let run = |extra: &[&str], text: &str| -> Value {
        let spec = format!("{}:exec:echo {text}", db.name);
        let mut args = vec!["backup", &app.name, "--to", &url, "--json", "--dump", &spec];
        args.extend_from_slice(extra);
        json(&dest.run(&args).ok())["backup"].clone()
    };
    run(&["--incremental"], "first");
    app.sh("echo two > /srv/media/b");
    let second = run(&["--incremental"], "second");
    assert!(second["parent"].is_string(), "{second}");
    let third = run(&["--agent", "never"], "third");
    for (m, text) in [(&second, "second"), (&third, "third")] {
        let id = m["id"].as_str().unwrap();
        dest.run(&["verify", id, "--to", &url]).ok();
        // The volumes restore as they were, the dump left out of them (and of a dry run's diff).
        let target = App::created("dump-any-r", &["/srv/media"]);
        let dry = dest.run(&[
            "restore",
            &target.name,
            "--backup",
            id,
            "--from",
            &url,
            "--container",
            &app.name,
            "--dry-run",
            "--json",
        ]);
        let dry = json(&dry.ok());
        assert_eq!(dry["paths"][0]["add_total"], 2, "{dry}");
        let r = dest.run(&[
            "restore",
            &target.name,
            "--backup",
            id,
            "--from",
            &url,
            "--container",
            &app.name,
            "--no-safety-backup",
            "--no-progress",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        target.start();
        assert_eq!(target.sh("ls /srv/media"), "a\nb\n");
        // A command's dump loads through the command given.
        let without = restore_db(&dest, &db.name, &[id]);
        assert_eq!(without.code, 2);
        assert!(without.stderr.contains("--command"), "{}", without.stderr);
        restore_db(&dest, &db.name, &[id, "--command", "cat > /tmp/loaded"]).ok();
        assert_eq!(db.sh("cat /tmp/loaded"), format!("{text}\n"));
    }
}

#[test]
fn a_config_job_streams_its_dumps_and_a_bad_one_is_named() {
    let db = App::running("dump-job", &[]);
    let app = App::running("dump-job-app", &["/srv/media"]);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("backups");
    let job = |dumps: &str| {
        common::media_job(
            tmp.path(),
            &dest,
            &app.name,
            &format!("dumps = [{dumps}]\n"),
        )
    };
    let cfg = job(&format!("\"{}:exec:echo from the job\"", db.name));
    common::dockyard(&["run", "--config", cfg.to_str().unwrap()]).ok();
    let listed = common::list(&dest);
    assert_eq!(
        listed[0]["dumps"][0]["container"],
        db.name.as_str(),
        "{listed:?}"
    );
    let cfg = job("\"db:postgres:no;way\"");
    let r = common::dockyard(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("job \"media\": dumps:"), "{}", r.stderr);
}

/// Whoever holds the store replaces the first dump of backup `m` at the local `dest` with `dump`
/// and fixes every checksum and size the manifest has (the archive's and the dump's own).
fn forge_dump(dest: &Dest, m: &Value, dump: &[u8]) {
    let name = m["archive"].as_str().unwrap();
    let tar = zstd::decode_all(&dest.read(name)[..]).unwrap();
    let mut forged = tar::Builder::new(Vec::new());
    for (i, entry) in tar::Archive::new(&tar[..]).entries().unwrap().enumerate() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        if i == 0 {
            header.set_size(dump.len() as u64);
            header.set_cksum();
            forged.append(&header, dump).unwrap();
        } else {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            forged.append(&header, &data[..]).unwrap();
        }
    }
    let forged = forged.into_inner().unwrap();
    let zst = zstd::encode_all(&forged[..], 3).unwrap();
    dest.replace(name, &zst);
    let mut fixed = m.clone();
    fixed["sha256"] = Value::from(hex::encode(sha2::Sha256::digest(&zst)));
    fixed["size"] = Value::from(zst.len());
    fixed["tar_bytes"] = Value::from(forged.len());
    fixed["dumps"][0]["sha256"] = Value::from(hex::encode(sha2::Sha256::digest(dump)));
    fixed["dumps"][0]["size"] = Value::from(dump.len());
    let id = m["id"].as_str().unwrap();
    dest.replace(
        &format!("{id}.json"),
        &serde_json::to_vec_pretty(&fixed).unwrap(),
    );
}

#[test]
fn a_forged_dump_cannot_reach_a_shell_another_database_or_another_file() {
    let pg = server("pg-shell", "run-postgres", &[]);
    let maria = server("maria-shell", "run-mariadb", &[]);
    let app = App::running("shell-app", &["/srv/media"]);
    docker(&["exec", "-u", "postgres", &pg.name, "createdb", "app"]);
    psql(
        &pg,
        "app",
        "create table keep (v text); insert into keep values ('kept')",
    );
    mariadb(&maria, "create database shop; create table shop.keep (v text); insert into shop.keep values ('kept')");
    pg.sh("sqlite3 /tmp/app.db 'create table keep (v text)'");
    let dest = Dest::local();
    let cases = [
        (
            format!("{}:postgres:app", pg.name),
            "\\! touch /tmp/pwned\n\\connect app\nDROP TABLE keep;\n",
            "fresh",
        ),
        (
            format!("{}:mariadb:shop", maria.name),
            "system touch /tmp/pwned\nCREATE TABLE t (x int);\n",
            "fresh",
        ),
        (
            format!("{}:sqlite:/tmp/app.db", pg.name),
            ".shell touch /tmp/pwned\nATTACH '/tmp/other.db' AS o;\nCREATE TABLE o.t (x);\n",
            "/tmp/fresh.db",
        ),
    ];
    for (spec, sql, target) in cases {
        let done = backup(&dest, &app, &[&spec]);
        let m = &done["backup"];
        forge_dump(&dest, m, sql.as_bytes());
        let id = m["id"].as_str().unwrap();
        let r = restore_db(
            &dest,
            spec.split(':').next().unwrap(),
            &[id, "--database", target],
        );
        assert_ne!(r.code, 0, "{spec}: {}", r.stdout);
        for c in [&pg, &maria] {
            let left = c.root_sh("ls /tmp/pwned /tmp/other.db 2>/dev/null || true");
            assert_eq!(left, "", "{spec}: {}", r.stderr);
        }
    }
    assert_eq!(psql(&pg, "app", "select v from keep"), "kept\n");
    let dbs = databases(&pg);
    assert!(
        !dbs.contains("fresh") && !dbs.contains("dockyard_"),
        "{dbs}"
    );
    assert_eq!(mariadb(&maria, "select v from shop.keep"), "kept\n");
    assert_eq!(
        pg.sh("ls /tmp/fresh.db /tmp/fresh.db.dockyard-restore 2>/dev/null || true"),
        ""
    );

    // A psql without restricted mode (before PostgreSQL 15.14 and its siblings) is refused,
    // before anything is read or created.
    pg.root_sh(
        "printf '#!/bin/sh\\n/usr/bin/psql \"$@\" | sed s/restrict/r3strict/g\\n' > /usr/local/bin/psql && chmod 755 /usr/local/bin/psql",
    );
    let done = backup(&dest, &app, &[&format!("{}:postgres:app", pg.name)]);
    let id = done["backup"]["id"].as_str().unwrap();
    let r = restore_db(&dest, &pg.name, &[id, "--database", "fresh"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("has no restricted mode"), "{}", r.stderr);
    let dbs = databases(&pg);
    assert!(
        !dbs.contains("fresh") && !dbs.contains("dockyard_"),
        "{dbs}"
    );
}

#[test]
fn a_mysql_load_cut_short_leaves_the_database_as_it_was() {
    let db = server("maria-cut", "run-mariadb", &[]);
    let app = App::running("maria-cut-app", &["/srv/media"]);
    mariadb(
        &db,
        "create database shop; use shop; create table notes (id int primary key, body text);
         insert into notes select seq, repeat(md5(seq), 20) from seq_1_to_20000;",
    );
    let dest = Dest::local();
    let done = backup(&dest, &app, &[&format!("{}:mariadb:shop", db.name)]);
    let m = &done["backup"];
    assert!(m["dumps"][0]["size"].as_u64().unwrap() > 4 << 20, "{m}");
    let id = m["id"].as_str().unwrap();
    // Into a database that is not there: killed with part of the dump loaded, the load ends
    // at a statement's end without the line dockyard's framing adds last, and is undone.
    let run = faulted_restore_db(&dest, &db.name, id, &["--database", "cut"], "dump-loading");
    run.signal("KILL");
    run.finish();
    common::wait_until(
        "the load to end",
        std::time::Duration::from_secs(120),
        || {
            db.sh("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
                .split("dockyard-mysql")
                .count()
                == 1
        },
    );
    let dbs = mariadb(&db, "show databases");
    assert!(!dbs.lines().any(|l| l == "cut"), "{dbs}");
    restore_db(&dest, &db.name, &[id, "--database", "cut"]).ok();
    assert_eq!(
        mariadb(&db, "select count(*), sum(length(body)) from cut.notes"),
        "20000\t12800000\n"
    );
}

#[test]
fn postgres_s_default_database_the_maintenance_one_comes_back() {
    // No POSTGRES_DB in this image's environment: `--dump C:postgres` dumps the user's own
    // database, `postgres`, which a load can only replace from another one.
    let db = server("pg-default", "run-postgres", &[]);
    let app = App::running("pg-default-app", &["/srv/media"]);
    psql(
        &db,
        "postgres",
        "create table notes (v text); insert into notes values ('kept')",
    );
    let dest = Dest::local();
    let done = backup(&dest, &app, &[&format!("{}:postgres", db.name)]);
    let m = &done["backup"];
    assert_eq!(m["dumps"][0]["file"], "default.sql");
    let id = m["id"].as_str().unwrap();
    psql(&db, "postgres", "drop table notes");
    restore_db(&dest, &format!("{}/default.sql", db.name), &[id]).ok();
    assert_eq!(psql(&db, "postgres", "select v from notes"), "kept\n");
    let dbs = databases(&db);
    assert!(!dbs.contains("dockyard_"), "{dbs}");
}
