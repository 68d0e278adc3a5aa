"""Risk service of the Python baseline: RiskService.Score over gRPC, as its own process.

Written the way the grpcio tutorials show a service: a servicer class, grpc.server with a ThreadPoolExecutor.
Rules are a few fixed checks (no velocity: the benchmark sends many authorizations per account, and courier's
side of the comparison runs without a velocity rule too).

Usage: python risk_server.py [--port 0] [--workers 10]; prints "risk: listening on 127.0.0.1:PORT".
"""

import argparse
from concurrent import futures

import grpc

from courier.risk.v1 import risk_pb2, risk_pb2_grpc

LARGE_AMOUNT = 500_000  # minor units: 5,000.00
DENY_AMOUNT = 10_000_000


class RiskServicer(risk_pb2_grpc.RiskServiceServicer):
    def Score(self, request, context):
        reasons = []
        score = 0
        if request.amount > DENY_AMOUNT:
            reasons.append(risk_pb2.RiskReason(rule_id="amount-deny", description="amount too large", deny=True))
            score = 1000
        elif request.amount > LARGE_AMOUNT:
            reasons.append(risk_pb2.RiskReason(rule_id="large-amount", description="large amount", score=300))
            score += 300
        if request.HasField("available_amount") and request.amount * 10 > request.available_amount * 9:
            reasons.append(risk_pb2.RiskReason(rule_id="drains", description="drains the account", score=200))
            score += 200
        if score >= 1000:
            decision = risk_pb2.RISK_DECISION_DENY
        elif score >= 500:
            decision = risk_pb2.RISK_DECISION_REVIEW
        else:
            decision = risk_pb2.RISK_DECISION_ALLOW
        return risk_pb2.ScoreResponse(
            score=min(score, 1000), decision=decision, reasons=reasons, rule_set_version="python-baseline"
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    risk_pb2_grpc.add_RiskServiceServicer_to_server(RiskServicer(), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"risk: listening on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
