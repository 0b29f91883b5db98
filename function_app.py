"""Trawl's Function App: redacts credentials from logs, sets up telemetry, creates the DFApp and registers
one blueprint per concern."""
import azure.durable_functions as df
import azure.functions as func

from activities import job_steps, reconciler, retention_timer, scrape_worker
from api import admin, content, dashboard, events, health, job_data, jobs, logs, openapi, pages, results, search
from orchestrators import job
from shared.adapters.redaction import install_log_redaction
from shared.adapters.telemetry import configure_telemetry

install_log_redaction()
configure_telemetry()
app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(jobs.bp)
app.register_functions(admin.bp)
app.register_functions(results.bp)
app.register_functions(content.bp)
app.register_functions(pages.bp)
app.register_functions(search.bp)
app.register_functions(job_data.bp)
app.register_functions(logs.bp)
app.register_functions(events.bp)
app.register_functions(openapi.bp)
app.register_functions(health.bp)
app.register_functions(dashboard.bp)
app.register_functions(job.bp)
app.register_functions(job_steps.bp)
app.register_functions(scrape_worker.bp)
app.register_functions(reconciler.bp)
app.register_functions(retention_timer.bp)
