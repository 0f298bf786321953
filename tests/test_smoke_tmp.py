from tests.conftest import Proxy

async def test_smoke(signed_in: Proxy) -> None:
    async with signed_in.client.get(f"{signed_in.url}/api/users/me") as r:
        print(r.status, await r.text())
        assert r.status == 200
    async with signed_in.client.get(f"{signed_in.url}/auth/me") as r:
        print(r.status, await r.text())
