"""dev.sh's helpers. Those that run before a series' virtual environment exists
(oca_matrix, odoo_requirements, check_static, gen_readme, check_artefacts) run as
scripts with any Python and import nothing of the harness (but oca_matrix's
check-copy, run with the series' Python: the launcher)."""
