//! docs/operations.md's configuration reference names every key of every service, with its
//! variable: a key added to a config type without a line in the reference fails here.

use cpis_mesh::{ConfigSource, MeshService, ServiceSection};

const HEX_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Every `section.key` of service `S`, from its defaults serialised.
fn keys<S: MeshService>() -> Vec<String>
where
    S::Section: serde::Serialize,
{
    let section = <S::Section as ServiceSection>::NAME.to_ascii_uppercase();
    let config = ConfigSource::empty()
        .with_var("CPIS_PRIVACY_NHS_HASH_KEY", HEX_KEY)
        .with_var("CPIS_IDENTITY_KEY_ENCRYPTION_KEY", HEX_KEY)
        .with_var("CPIS_AUDIT_CHECKPOINT_KEY", HEX_KEY)
        .with_var(format!("CPIS_{section}_DATABASE_URL"), "sqlite::memory:")
        .load::<S::Section>(&S::DEFAULTS)
        .expect("defaults load");
    // JSON, not TOML: it keeps the keys whose default is `None` (as null).
    let mut keys = Vec::new();
    let mesh = serde_json::to_value(&config.mesh).expect("mesh sections serialise");
    collect(&mesh, "", &mut keys);
    let own = serde_json::to_value(&config.service).expect("service section serialises");
    collect(&own, <S::Section as ServiceSection>::NAME, &mut keys);
    keys
}

fn collect(value: &serde_json::Value, prefix: &str, keys: &mut Vec<String>) {
    if let serde_json::Value::Object(table) = value {
        for (name, inner) in table {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match inner {
                serde_json::Value::Object(_) if prefix.is_empty() => collect(inner, &path, keys),
                _ => keys.push(path),
            }
        }
    }
}

#[test]
fn the_operations_guide_documents_every_configuration_key() {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md"),
    )
    .expect("docs/operations.md");
    let mut all: Vec<String> = Vec::new();
    all.extend(keys::<cpis_identity::Identity>());
    all.extend(keys::<cpis_flag_registry::FlagRegistry>());
    all.extend(keys::<cpis_attendance::Attendance>());
    all.extend(keys::<cpis_notification::Notification>());
    all.extend(keys::<cpis_audit::Audit>());
    all.sort();
    all.dedup();
    let missing: Vec<String> = all
        .iter()
        .filter(|key| {
            let variable = cpis_mesh::config::variable_for(key);
            !guide.contains(&format!("`{variable}`"))
        })
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md lacks these keys (as `CPIS_...` variables): {missing:#?}"
    );
}
