-- +goose Up
-- What a running attempt of a job has written where two of its searches
-- may find the same resource (bulk seen.go): a row per resource.
CREATE TABLE export_seen (
    job     TEXT NOT NULL,
    attempt {{int}} NOT NULL,
    key     TEXT NOT NULL,
    PRIMARY KEY (job, attempt, key)
){{withoutRowID}};

-- +goose Down
DROP TABLE export_seen;
