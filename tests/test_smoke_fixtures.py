from sqlalchemy.ext.asyncio import AsyncSession

from tests.support.factories import make_key, make_tenant


async def test_factories_create_a_tenant_and_key(session: AsyncSession) -> None:
    tenant = await make_tenant(session)
    key = await make_key(session, tenant.name)
    assert key.secret.startswith(key.prefix)
