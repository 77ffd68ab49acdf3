"""Benchmarks against OCA's queue_job_cron_jobrunner."""
