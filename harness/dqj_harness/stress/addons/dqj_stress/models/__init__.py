from . import dqj_stress_job
