"""`make demo` runs its whole job: a page's card read, identity check, visit with refund, pension collection,
receipts; and prints what a page (the reader bridge's URL) and a HIS (the platform URL and its key) need."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_the_main_job(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sscard.demo", "--no-wait", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())  # the console wraps long lines at its width
    for expected in ("identity check", "verified=True", "医疗费用结算单", "医疗费用退费凭证", "养老金领取凭证",
                     "北京示例第三医院", "原因：退一项检查", "API docs: http://127.0.0.1:",
                     "|110105198001010016|B10238475|", "/v1/bridge/ws?access_token=",
                     "/fsi/api/rsfComIfsService/callService with X-Terminal-Key: ", "fixmedins_code H11000301"):
        assert expected in text, expected
