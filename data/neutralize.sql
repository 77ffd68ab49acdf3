-- A neutralized copy (an Odoo.sh staging build, a restored backup) must neither run
-- production's queue nor answer production's scheduler: the jobs waiting to run are
-- cancelled (their history is kept), and the external API key is revoked.
UPDATE queue_job
   SET state = 'cancelled', date_cancelled = (now() AT TIME ZONE 'UTC')
 WHERE state IN ('wait_dependencies', 'pending', 'enqueued', 'started');
DELETE FROM ir_config_parameter WHERE key = 'deltatech_queue_job.api_key_hash';
