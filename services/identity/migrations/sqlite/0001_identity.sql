-- Identity (SQLite; times are RFC 3339 text): the directory (roles, organisations and their care settings, users, role
-- profiles), the keys that sign session tokens, and the person register.

-- A role and the activities it grants: dotted codes, sorted, separated by spaces.
CREATE TABLE roles (
    name       TEXT PRIMARY KEY,
    activities TEXT NOT NULL
);

INSERT INTO roles (name, activities) VALUES
    ('administrator', 'directory.admin'),
    ('clinician', 'child.check child.view'),
    ('privacy_officer', 'audit.read'),
    ('registration_clerk', 'child.check'),
    ('social_worker', 'flag.manage notification.read');

-- Health organisations (with care settings) and local authorities (with contacts).
CREATE TABLE organisations (
    code                 TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('health', 'local_authority')),
    office_hours_phone   TEXT,
    emergency_duty_phone TEXT,
    secure_email         TEXT,
    CHECK ((kind = 'local_authority') = (emergency_duty_phone IS NOT NULL))
);

-- A health organisation's care settings, in the order the directory lists them.
CREATE TABLE care_settings (
    organisation TEXT NOT NULL REFERENCES organisations (code) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    site         TEXT NOT NULL,
    setting_type TEXT NOT NULL,
    name         TEXT NOT NULL,
    phone        TEXT NOT NULL,
    PRIMARY KEY (organisation, position)
);

-- People who sign in. Credentials are argon2id PHC strings only.
CREATE TABLE users (
    user_id           TEXT PRIMARY KEY,
    username          TEXT NOT NULL UNIQUE,
    display_name      TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    credential_hash   TEXT NOT NULL,
    create_time       TEXT NOT NULL,
    last_sign_in_time TEXT
);

-- A user's role at one organisation.
CREATE TABLE role_profiles (
    role_profile_id TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (user_id),
    organisation    TEXT NOT NULL REFERENCES organisations (code),
    role            TEXT NOT NULL REFERENCES roles (name),
    status          TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    create_time     TEXT NOT NULL
);

-- One active profile per user, organisation and role; disabled ones are history.
CREATE UNIQUE INDEX role_profiles_one_active
    ON role_profiles (user_id, organisation, role) WHERE status = 'active';
CREATE INDEX role_profiles_user ON role_profiles (user_id);
CREATE INDEX role_profiles_organisation ON role_profiles (organisation);

-- Token signing keys by generation (the newest signs). The private half is a PKCS#8
-- document sealed with ChaCha20-Poly1305 under the configured key encryption key.
CREATE TABLE signing_keys (
    generation         INTEGER PRIMARY KEY,
    key_id             TEXT NOT NULL UNIQUE,
    public_key         BLOB NOT NULL,
    sealed_private_key BLOB NOT NULL,
    create_time        TEXT NOT NULL,
    retire_time        TEXT
);

-- The person register (the national demographics stand-in).
CREATE TABLE persons (
    nhs_number    TEXT PRIMARY KEY,
    date_of_birth TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'superseded', 'inactive')),
    superseded_by TEXT,
    sensitive     INTEGER NOT NULL,
    update_time   TEXT NOT NULL,
    CHECK ((status = 'superseded') = (superseded_by IS NOT NULL))
);
