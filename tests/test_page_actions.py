"""Page actions against the provider fakes: re-poll now, and resubmit as a linked job."""

import re

import pytest

from tests.provider_env import IPRODUCTION, post

pytestmark = pytest.mark.engines

PREPROCESS = "aliyun.vod.SubmitPreprocessJobs"


def act(client, job_id: str, action: str):
    """Press a button on the job page, with the page's CSRF token (as a browser would)."""
    html = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    assert f'action="/jobs/{job_id}/{action}"' in html
    return client.post(f"/jobs/{job_id}/{action}", data={"csrf": token})


def test_resubmit_a_refused_job_as_a_new_linked_job(build, fakes):
    client = build().test_client()
    refused = post(client, PREPROCESS, {"VideoId": "late-video"}).get_json()["job"]
    assert (refused["state"], refused["error_code"]) == ("submit_failed", "InvalidVideo.NotFound")
    fakes.aliyun.add_video("late-video", status="Normal")  # the video exists now
    response = act(client, refused["id"], "resubmit")
    assert response.status_code == 303
    new_id = response.headers["Location"].rsplit("/", 1)[1]
    new = client.get(f"/api/jobs/{new_id}").get_json()
    assert new["state"] == "submitted" and new["provider_job_id"] and new_id != refused["id"]
    assert fakes.aliyun.calls[-1][1]["VideoId"] == "late-video"
    assert f'Resubmitted from <a href="/jobs/{refused["id"]}">' in client.get(
        f"/jobs/{new_id}"
    ).get_data(as_text=True)
    assert f'Resubmitted as <a href="/jobs/{new_id}">' in client.get(
        f"/jobs/{refused['id']}"
    ).get_data(as_text=True)
    old_events = client.get(f"/api/jobs/{refused['id']}").get_json()["events"]
    assert old_events[-1]["event_type"] == "Resubmitted"


def test_a_job_in_progress_offers_no_resubmit(build, fakes):
    client = build().test_client()
    job = post(client, PREPROCESS, {"VideoId": "vid1"}).get_json()
    assert "Resubmit" not in client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    html = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    response = client.post(f"/jobs/{job['id']}/resubmit", data={"csrf": token})
    assert response.status_code == 409 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert f'href="/jobs/{job["id"]}">' in page and "console.css" in page  # styled, a way back


def test_repoll_now_settles_a_job_from_its_status_api(build, fakes):
    client = build(MPS_PIPELINE_ID="pipeline-1").test_client()
    job = post(client, "aliyun.mps.SubmitIProductionJob", IPRODUCTION).get_json()
    assert job["state"] == "submitted"
    fakes.aliyun.set_iproduction(job["provider_job_id"], state="Success")
    response = act(client, job["id"], "repoll")
    assert response.status_code == 303 and "notice=poll" in response.headers["Location"]
    assert "poll: changed" in client.get(response.headers["Location"]).get_data(as_text=True)
    settled = client.get(f"/api/jobs/{job['id']}").get_json()
    assert settled["state"] == "succeeded" and settled["events"][-1]["source"] == "poll"
    assert "Re-poll now" not in client.get(f"/jobs/{job['id']}").get_data(as_text=True)


def test_without_credentials_actions_are_disabled_with_the_reason(build, fakes):
    client = build().test_client()
    refused = post(client, PREPROCESS, {"VideoId": "late-video"}).get_json()["job"]
    bare = build(ALIYUN_ACCESS_KEY_ID=None, ALIYUN_ACCESS_KEY_SECRET=None).test_client()
    html = bare.get(f"/jobs/{refused['id']}").get_data(as_text=True)
    assert f'action="/jobs/{refused["id"]}/resubmit"' not in html  # no form that cannot work
    assert "disabled" in html and "RECEIVER_ALIYUN_ACCESS_KEY_ID" in html
    # A form posted anyway (an old tab) gets the API's status and a styled page back to the job.
    token = "ab" * 16
    bare.set_cookie("jobledger_csrf", token)
    response = bare.post(f"/jobs/{refused['id']}/resubmit", data={"csrf": token})
    assert response.status_code == 503 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "RECEIVER_ALIYUN_ACCESS_KEY_ID" in page and f'href="/jobs/{refused["id"]}"' in page
    assert "console.css" in page


def test_repoll_is_disabled_where_there_is_no_status_api_or_no_credentials(build, fakes):
    client = build(MPS_PIPELINE_ID="pipeline-1").test_client()
    job = post(client, "aliyun.mps.SubmitIProductionJob", IPRODUCTION).get_json()
    bare = build(
        MPS_PIPELINE_ID="pipeline-1", ALIYUN_ACCESS_KEY_ID=None, ALIYUN_ACCESS_KEY_SECRET=None
    ).test_client()
    html = bare.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert 'action="/jobs/' + job["id"] + '/repoll"' not in html
    assert re.search(r"<button[^>]*disabled[^>]*>Re-poll now</button>", html)
    assert "set RECEIVER_ALIYUN_ACCESS_KEY_ID and RECEIVER_ALIYUN_ACCESS_KEY_SECRET to poll" in html
    token = "cd" * 16
    bare.set_cookie("jobledger_csrf", token)
    response = bare.post(f"/jobs/{job['id']}/repoll", data={"csrf": token})  # an old tab
    assert response.status_code == 503 and "RECEIVER_ALIYUN_ACCESS_KEY_ID" in response.text
    assert f'href="/jobs/{job["id"]}"' in response.text
