"""Trawl's Function App: creates the DFApp and registers one blueprint per concern; nothing else."""
import azure.durable_functions as df
import azure.functions as func

from activities import job_steps, reconciler, scrape_worker
from api import health, jobs
from orchestrators import job

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(jobs.bp)
app.register_functions(health.bp)
app.register_functions(job.bp)
app.register_functions(job_steps.bp)
app.register_functions(scrape_worker.bp)
app.register_functions(reconciler.bp)
