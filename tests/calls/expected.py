"""Expected call summaries of every fixture under tests/fixtures/ami/ (exact).

Reviewed by hand against the traces. After re-recording a fixture
(`python -m tests.scenarios.driver --write NAME`), regenerate with
`python -m tests.calls.expected` and review the diff.
"""

from __future__ import annotations

from typing import Any

EXPECTED: dict[str, list[dict[str, Any]]] = {
    "basic/abandoned_in_hold.jsonl": [
        {
            "call_id": "t4248f9-abandoned_in_hold",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795737690.468447,
            "answered_at": None,
            "ended_at": 1795737691.47278,
            "answered_by": None,
            "rang": [],
            "outcome": "abandoned",
            "hangup_by": "caller",
            "cause": None,
            "transfers": [],
            "wait_s": 1.004333,
            "talk_s": None,
            "history_complete": True,
        }
    ],
    "basic/agent_no_answer.jsonl": [
        {
            "call_id": "te67934-agent_no_answer",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795737691.920188,
            "answered_at": None,
            "ended_at": 1795737695.032792,
            "answered_by": None,
            "rang": ["1001"],
            "outcome": "abandoned",
            "hangup_by": "caller",
            "cause": None,
            "transfers": [],
            "wait_s": 3.112604,
            "talk_s": None,
            "history_complete": True,
        }
    ],
    "basic/answered_agent_hangup.jsonl": [
        {
            "call_id": "t09467a-answered_agent_hangup",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795737688.282479,
            "answered_at": 1795737689.588638,
            "ended_at": 1795737690.093126,
            "answered_by": "1001",
            "rang": ["1001"],
            "outcome": "answered",
            "hangup_by": "callee",
            "cause": 16,
            "transfers": [],
            "wait_s": 1.306159,
            "talk_s": 0.504386,
            "history_complete": True,
        }
    ],
    "basic/answered_caller_hangup.jsonl": [
        {
            "call_id": "t53adc7-answered_caller_hangup",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795738035.821931,
            "answered_at": 1795738037.129085,
            "ended_at": 1795738037.633305,
            "answered_by": "1001",
            "rang": ["1001"],
            "outcome": "answered",
            "hangup_by": "caller",
            "cause": 16,
            "transfers": [],
            "wait_s": 1.307154,
            "talk_s": 0.50422,
            "history_complete": True,
        }
    ],
    "basic/chinese_caller_line.jsonl": [
        {
            "call_id": "t5a6f38-chinese_caller_line",
            "node": "main",
            "caller": "13800138000",
            "caller_name": "张三",
            "dialed": "96123",
            "line": "12345",
            "started_at": 1795737695.422346,
            "answered_at": 1795737696.728521,
            "ended_at": 1795737697.233803,
            "answered_by": "1001",
            "rang": ["1001"],
            "outcome": "answered",
            "hangup_by": "callee",
            "cause": 16,
            "transfers": [],
            "wait_s": 1.306175,
            "talk_s": 0.503789,
            "history_complete": True,
        }
    ],
    "legacy/asterisk13_sip.txt": [
        {
            "call_id": "1466155560.3",
            "node": "main",
            "caller": "13900001111",
            "caller_name": "",
            "dialed": "12315",
            "line": "12315",
            "started_at": 1466155560.0,
            "answered_at": None,
            "ended_at": 1466155568.003,
            "answered_by": None,
            "rang": ["1002"],
            "outcome": "abandoned",
            "hangup_by": "caller",
            "cause": 16,
            "transfers": [],
            "wait_s": 8.003,
            "talk_s": None,
            "history_complete": True,
        },
        {
            "call_id": "1466155555.1",
            "node": "main",
            "caller": "13800138000",
            "caller_name": "李四",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1466155555.1,
            "answered_at": 1466155559.0005,
            "ended_at": 1466155650.005,
            "answered_by": "1001",
            "rang": ["1001"],
            "outcome": "answered",
            "hangup_by": "callee",
            "cause": 16,
            "transfers": [],
            "wait_s": 3.9005,
            "talk_s": 91.0015,
            "history_complete": True,
        },
    ],
    "multi/two_calls.jsonl": [
        {
            "call_id": "t41455a-two_callsb",
            "node": "main",
            "caller": "13700001111",
            "caller_name": "李四",
            "dialed": "12315",
            "line": "12315",
            "started_at": 1795737716.207876,
            "answered_at": 1795737717.419257,
            "ended_at": 1795737717.826128,
            "answered_by": "1002",
            "rang": ["1002"],
            "outcome": "answered",
            "hangup_by": "callee",
            "cause": 16,
            "transfers": [],
            "wait_s": 1.211381,
            "talk_s": 0.405759,
            "history_complete": True,
        },
        {
            "call_id": "t41455a-two_calls",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795737716.207258,
            "answered_at": 1795737717.41972,
            "ended_at": 1795737718.025638,
            "answered_by": "1001",
            "rang": ["1001"],
            "outcome": "answered",
            "hangup_by": "caller",
            "cause": 16,
            "transfers": [],
            "wait_s": 1.212462,
            "talk_s": 0.605918,
            "history_complete": True,
        },
    ],
    "restart/asterisk_restart.jsonl": [
        {
            "call_id": "te69b35-asterisk_restart",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795737803.270951,
            "answered_at": 1795737804.578788,
            "ended_at": 1795737805.157124,
            "answered_by": "1001",
            "rang": ["1001"],
            "outcome": "answered",
            "hangup_by": "system",
            "cause": 16,
            "transfers": [],
            "wait_s": 1.307837,
            "talk_s": 0.578238,
            "history_complete": True,
        }
    ],
    "restart/reconnect_missed_events.jsonl": [
        {
            "call_id": "t62b5fb-reconnect_missed_events",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795737969.843196,
            "answered_at": 1795737971.157243,
            "ended_at": 1795737971.4601295,
            "answered_by": "1001",
            "rang": ["1001"],
            "outcome": "answered",
            "hangup_by": "system",
            "cause": None,
            "transfers": [],
            "wait_s": 1.314047,
            "talk_s": 0.302886,
            "history_complete": True,
        },
        {
            "call_id": "t62b5fb-reconnect_missed_eventsb",
            "node": "main",
            "caller": "13600002222",
            "caller_name": "王五",
            "dialed": "",
            "line": "",
            "started_at": 1795737971.778911,
            "answered_at": None,
            "ended_at": 1795737973.08461,
            "answered_by": "1002",
            "rang": [],
            "outcome": "answered",
            "hangup_by": "caller",
            "cause": 16,
            "transfers": [],
            "wait_s": None,
            "talk_s": None,
            "history_complete": False,
        },
    ],
    "transfer/attended.jsonl": [
        {
            "call_id": "ta4568d-attended",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795737755.720895,
            "answered_at": 1795737757.029925,
            "ended_at": 1795737759.542897,
            "answered_by": "1001",
            "rang": ["1001", "1002"],
            "outcome": "answered",
            "hangup_by": "caller",
            "cause": 16,
            "transfers": [
                {"type": "attended", "by": "1001", "to": "1002", "at": 1795737759.039993}
            ],
            "wait_s": 1.30903,
            "talk_s": 2.512972,
            "history_complete": True,
        }
    ],
    # an older dialplan's Dial(Local/...) chains (issue 15): the seat and the consultation
    # are reached through two and three Local pairs, optimised away while the calls are up
    # (LocalOptimizationBegin/End): still one attended transfer 1001 -> 1002, and the
    # optimised pairs' hang-ups are not the callee hanging up
    "transfer/attended_local_chain.jsonl": [
        {
            "call_id": "t219246-attended_local_chain",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1796296854.176802,
            "answered_at": 1796296855.482491,
            "ended_at": 1796296859.013529,
            "answered_by": "1001",
            "rang": ["1001", "1002"],
            "outcome": "answered",
            "hangup_by": "caller",
            "cause": 16,
            "transfers": [
                {"type": "attended", "by": "1001", "to": "1002", "at": 1796296858.510672}
            ],
            "wait_s": 1.305689,
            "talk_s": 3.530832,
            "history_complete": True,
        }
    ],
    # the same scenario live, the consultation chain collapsing the other way round: its
    # middle pair's Source (bridged with `;1`) is swapped into `;2`'s bridge, and the
    # transfer target's own pair is optimised only after the AttendedTransfer (one run in
    # three on the testbed): still the caller who hung up
    "transfer/attended_local_chain_reversed.jsonl": [
        {
            "call_id": "t58c502-attended_local_chain",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1796318540.909517,
            "answered_at": 1796318542.219692,
            "ended_at": 1796318545.792974,
            "answered_by": "1001",
            "rang": ["1001", "1002"],
            "outcome": "answered",
            "hangup_by": "caller",
            "cause": 16,
            "transfers": [
                {"type": "attended", "by": "1001", "to": "1002", "at": 1796318545.288881}
            ],
            "wait_s": 1.310175,
            "talk_s": 3.573282,
            "history_complete": True,
        }
    ],
    # Asterisk sent no TransferTarget* headers (live, about one attended transfer in four):
    # the target is found in the bridge the transferee was moved to
    "transfer/attended_no_target.jsonl": [
        {
            "call_id": "tc641a7-attended",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795741823.109443,
            "answered_at": 1795741824.418416,
            "ended_at": 1795741826.959736,
            "answered_by": "1001",
            "rang": ["1001", "1002"],
            "outcome": "answered",
            "hangup_by": "caller",
            "cause": 16,
            "transfers": [
                {"type": "attended", "by": "1001", "to": "1002", "at": 1795741826.452704}
            ],
            "wait_s": 1.308973,
            "talk_s": 2.54132,
            "history_complete": True,
        }
    ],
    "transfer/blind.jsonl": [
        {
            "call_id": "tc81585-blind",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795737697.656366,
            "answered_at": 1795737698.962581,
            "ended_at": 1795737700.471811,
            "answered_by": "1001",
            "rang": ["1001", "1002"],
            "outcome": "answered",
            "hangup_by": "caller",
            "cause": 16,
            "transfers": [{"type": "blind", "by": "1001", "to": "1002", "at": 1795737699.465804}],
            "wait_s": 1.306215,
            "talk_s": 1.50923,
            "history_complete": True,
        }
    ],
    "transfer/external.jsonl": [
        {
            "call_id": "t82c4d6-external",
            "node": "main",
            "caller": "13912345678",
            "caller_name": "Test Caller",
            "dialed": "12345",
            "line": "12345",
            "started_at": 1795737700.873491,
            "answered_at": 1795737702.179745,
            "ended_at": 1795737703.695725,
            "answered_by": "1001",
            "rang": ["1001", "12315"],
            "outcome": "answered",
            "hangup_by": "caller",
            "cause": 16,
            "transfers": [{"type": "blind", "by": "1001", "to": "12315", "at": 1795737702.689727}],
            "wait_s": 1.306254,
            "talk_s": 1.51598,
            "history_complete": True,
        }
    ],
}


if __name__ == "__main__":
    import pprint
    from pathlib import Path

    from cti.replay import replay_file

    root = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
    pprint.pprint(
        {str(f.relative_to(root)): list(replay_file(f)) for f in sorted(root.glob("*/*"))},
        width=96,
        sort_dicts=False,
    )
