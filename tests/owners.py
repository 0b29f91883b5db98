"""The owner that tests which work below the API create jobs for."""
from shared.domain.models import Owner

# Not a valid Entra tenant or object id, so it can never collide with a token's owner.
ANONYMOUS_OWNER = Owner(tenant_id="anonymous", object_id="anonymous")
