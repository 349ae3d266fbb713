from conftest import PROXY, TEST_KEY, target


def test_queue_submit_reaches_fal_with_the_key(client, fake):
    response = client.post(
        PROXY, headers=target("https://queue.fal.run/fal-ai/flux/dev"), json={"prompt": "x"}
    )
    assert response.status_code == 200
    assert response.get_json()["request_id"]
    (call,) = fake.calls
    assert call.headers["Authorization"] == f"Key {TEST_KEY}"
    assert (call.host, call.path) == ("queue.fal.run", "/fal-ai/flux/dev")
