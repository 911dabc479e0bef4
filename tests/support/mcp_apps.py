"""The home applications' MCP servers as the tests start them (Home Assistant, the arr suite)
in front of the fakes of tests/support/fake_apps.py, with their token."""

from __future__ import annotations

from tests.support.env import free_port
from tests.support.fake_apps import FakeArr, FakeHomeAssistant, prowlarr_indexer, queue_record
from tests.support.kmock_helpers import McpProcess, start_server

TOKEN = "apps-test-token"


def stalled_sonarr() -> FakeArr:
    return FakeArr(
        app="sonarr",
        api_key="sonarr-key-0001",
        queue=[
            queue_record(11, "Show.S01E01.1080p"),
            queue_record(
                12,
                "Show.S01E02.1080p",
                status="warning",
                trackedDownloadStatus="warning",
                statusMessages=[
                    {"title": "Show.S01E02.1080p", "messages": ["The download is stalled with no connections"]}
                ],
                errorMessage="The download is stalled with no connections",
            ),
            queue_record(
                13,
                "Show.S01E03.1080p",
                status="completed",
                trackedDownloadStatus="warning",
                trackedDownloadState="importBlocked",
                statusMessages=[
                    {
                        "title": "One or more episodes expected in this release were not imported",
                        "messages": ["Episode file already imported"],
                    }
                ],
            ),
        ],
        health=[
            {
                "source": "DownloadClientCheck",
                "type": "error",
                "message": "Unable to communicate with qBittorrent. Connection refused",
                "wikiUrl": "https://wiki.servarr.com/sonarr/system#download-clients-are-unavailable",
            }
        ],
    )


def failing_prowlarr() -> FakeArr:
    return FakeArr(
        app="prowlarr",
        api_key="prowlarr-key-0003",
        indexers=[prowlarr_indexer(1, "1337x"), prowlarr_indexer(2, "TorrentLeech", privacy="private")],
        indexer_status=[
            {
                "id": 7,
                "indexerId": 2,
                "disabledTill": "2099-01-01T00:00:00Z",
                "initialFailure": "2024-05-01T06:00:00Z",
                "mostRecentFailure": "2024-05-01T09:00:00Z",
            }
        ],
        failing_indexers={2},
    )


async def start_ha(ha: FakeHomeAssistant, **env: str) -> McpProcess:
    return await start_server(
        free_port(),
        None,
        TOKEN,
        module="workers.toolservers.homeassistant",
        extra_args=["--ha-url", ha.url],
        env={"AGENTIC_HA_TOKEN": ha.token, **env},
    )


async def start_arr(fakes: dict[str, FakeArr]) -> McpProcess:
    args: list[str] = []
    env: dict[str, str] = {}
    for app, fake in fakes.items():
        args += [f"--{app}-url", fake.url]
        env[f"AGENTIC_{app.upper()}_API_KEY"] = fake.api_key
    return await start_server(free_port(), None, TOKEN, module="workers.toolservers.arr", extra_args=args, env=env)
