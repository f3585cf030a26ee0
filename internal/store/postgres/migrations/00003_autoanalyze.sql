-- +goose Up
-- Autovacuum analyzes a table after 10% + 50 rows of it change by default,
-- and a store filled from empty over hours plans on stale statistics in
-- between. The store also ANALYZEs after growth itself (Update); these
-- settings keep the statistics fresh under slower, steady change.
ALTER TABLE resources SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);
ALTER TABLE history SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);
ALTER TABLE idx_string SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);
ALTER TABLE idx_token SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);
ALTER TABLE idx_reference SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);
ALTER TABLE idx_date SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);
ALTER TABLE idx_number SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);
ALTER TABLE idx_quantity SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);
ALTER TABLE idx_uri SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);
ALTER TABLE history_token SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);
ALTER TABLE history_reference SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 200);

-- +goose Down
ALTER TABLE resources RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE history RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE idx_string RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE idx_token RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE idx_reference RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE idx_date RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE idx_number RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE idx_quantity RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE idx_uri RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE history_token RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
ALTER TABLE history_reference RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
