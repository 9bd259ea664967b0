//! Behaviour specific to one backend: opening, locking and configuration errors.

use patchbay_store::{DatabaseConfig, StoreError, connect};

#[tokio::test]
async fn a_second_process_cannot_open_the_same_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::from_settings(dir.path(), None).unwrap();
    let first = connect(&config).await.unwrap();
    let err = connect(&config).await.unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(
        err.to_string()
            .contains("in use by another Patchbay process"),
        "{err}"
    );
    first.close().await;
    drop(first);
    // Released with the store.
    connect(&config).await.unwrap();
}

#[tokio::test]
async fn an_unusable_data_directory_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let config = DatabaseConfig::from_settings(&file.join("data"), None).unwrap();
    let err = connect(&config).await.unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(
        err.to_string().contains("cannot create data directory")
            && err.to_string().contains("a-file"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_is_reported_without_its_password() {
    let port = patchbay_testkit::free_port();
    let config = DatabaseConfig::Postgres {
        url: format!("postgres://bob:hunter2@127.0.0.1:{port}/patchbay"),
    };
    let err = connect(&config).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("cannot connect to PostgreSQL") && msg.contains(&port.to_string()),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test]
async fn an_invalid_postgres_url_is_a_configuration_error() {
    let config = DatabaseConfig::Postgres {
        url: "postgres://bob:hunter2@127.0.0.1:notaport/db".into(),
    };
    let err = connect(&config).await.unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
