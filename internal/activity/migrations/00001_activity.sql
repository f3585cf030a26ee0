-- +goose Up
-- Per-credential activity (no PHI): minute buckets by status and
-- interaction, the recent requests of each credential, errors by cause.
-- cred is an OAuth client_id or an API key id; times are Unix
-- milliseconds (at) or minutes (minute), hours (hour).
CREATE TABLE activity_bucket (
    cred        TEXT NOT NULL,
    minute      {{int}} NOT NULL,
    status      {{int}} NOT NULL,
    interaction TEXT NOT NULL,
    count       {{int}} NOT NULL,
    latency_sum_us {{int}} NOT NULL,
    latency_max_us {{int}} NOT NULL,
    PRIMARY KEY (cred, minute, status, interaction)
){{withoutRowID}};
CREATE INDEX activity_bucket_minute ON activity_bucket (minute);
CREATE TABLE activity_recent (
{{- if postgres}}
    id          BIGSERIAL PRIMARY KEY,
{{- else}}
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
{{- end}}
    cred        TEXT NOT NULL,
    at          {{int}} NOT NULL,
    interaction TEXT NOT NULL,
    route       TEXT NOT NULL,
    status      {{int}} NOT NULL,
    latency_us  {{int}} NOT NULL,
    cause       TEXT NOT NULL
);
CREATE INDEX activity_recent_cred ON activity_recent (cred, id);
CREATE TABLE activity_error (
    cred      TEXT NOT NULL,
    hour      {{int}} NOT NULL,
    cause     TEXT NOT NULL,
    count     {{int}} NOT NULL,
    last_seen {{int}} NOT NULL,
    route     TEXT NOT NULL,
    status    {{int}} NOT NULL,
    PRIMARY KEY (cred, hour, cause)
){{withoutRowID}};
CREATE INDEX activity_error_hour ON activity_error (hour);

-- +goose Down
DROP TABLE activity_error;
DROP TABLE activity_recent;
DROP TABLE activity_bucket;
