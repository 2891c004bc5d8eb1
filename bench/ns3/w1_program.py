"""W1 in ns-3: run inside bench/.venv-ns3 (PyPI ns3==3.44.post0) by bench/w3_ns3.py.

Two nodes over a 1 Gbps / 1 ms point-to-point link. The server listens on K
ports and answers ``+PONG`` to ``PING``, closing when the client has closed; the
client opens one TCP connection every 1/rate s (round-robin over the K ports),
sends ``PING``, closes first on the answer, and keeps TIME_WAIT for 2 x
``ns3::TcpSocketBase::MaxSegLifetime`` = 60 s. The simulation runs N / rate + 1 s
of simulated time, like the timewait scenario. The program is C++ compiled
through cppyy (ns-3's callbacks are C++ function pointers) and driven from
here; one JSON line comes out.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

PROGRAM = r"""
#include "ns3/core-module.h"
#include "ns3/network-module.h"
#include "ns3/internet-module.h"
#include "ns3/point-to-point-module.h"

namespace twbench {
using namespace ns3;

struct Result {
    uint64_t started = 0, connected = 0, succeeded = 0, failed = 0, served = 0, events = 0;
    int64_t time_wait = 0;  // client sockets in TIME_WAIT now (from the "State" trace source)
    double sim_s = 0, setup_s = 0, run_s = 0, destroy_s = 0;
};

static Result g;
static uint32_t g_n = 0, g_ports = 1;
static Time g_interval;
static Ipv4Address g_server;
static Ptr<Node> g_clientNode;
static const uint16_t kBasePort = 6379;

static double Wall() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- server: +PONG per PING, close after the client's FIN
static void ServerRecv(Ptr<Socket> s) {
    Ptr<Packet> p;
    while ((p = s->Recv()) && p->GetSize() > 0) {
        g.served++;
        static const uint8_t pong[] = "+PONG\r\n";
        s->Send(Create<Packet>(pong, 7));
    }
}
static void ServerCloseNow(Ptr<Socket> s) { s->Close(); }
static void ServerPeerClosed(Ptr<Socket> s) {
    // Close outside the TCP stack's own call (it is still handling the FIN).
    Simulator::ScheduleNow(&ServerCloseNow, s);
}
static void ServerError(Ptr<Socket>) {}
static void ServerAccepted(Ptr<Socket> s, const Address&) {
    s->SetRecvCallback(MakeCallback(&ServerRecv));
    s->SetCloseCallbacks(MakeCallback(&ServerPeerClosed), MakeCallback(&ServerError));
}
static bool AcceptAll(Ptr<Socket>, const Address&) { return true; }

// ---- client: connect, PING, close first on +PONG
static void ClientRecv(Ptr<Socket> s) {
    Ptr<Packet> p;
    bool answered = false;
    while ((p = s->Recv()) && p->GetSize() > 0) answered = true;
    if (answered) {
        g.succeeded++;
        s->Close();
    }
}
static void ClientConnected(Ptr<Socket> s) {
    g.connected++;
    static const uint8_t ping[] = "PING\r\n";
    s->Send(Create<Packet>(ping, 6));
}
static void ClientFailed(Ptr<Socket>) { g.failed++; }
static void ClientState(TcpSocket::TcpStates_t from, TcpSocket::TcpStates_t to) {
    if (to == TcpSocket::TIME_WAIT) g.time_wait++;
    if (from == TcpSocket::TIME_WAIT) g.time_wait--;
}
static void ClientNext(uint32_t i) {
    if (i >= g_n) return;
    Ptr<Socket> s = Socket::CreateSocket(g_clientNode, TcpSocketFactory::GetTypeId());
    s->SetConnectCallback(MakeCallback(&ClientConnected), MakeCallback(&ClientFailed));
    s->SetRecvCallback(MakeCallback(&ClientRecv));
    s->TraceConnectWithoutContext("State", MakeCallback(&ClientState));
    if (s->Bind() != 0 || s->Connect(InetSocketAddress(g_server, kBasePort + i % g_ports)) != 0) {
        g.failed++;  // e.g. the 16,384 ephemeral ports are all in use
    } else {
        g.started++;
    }
    Simulator::Schedule(g_interval, &ClientNext, i + 1);
}

Result Run(uint32_t n, double rate, uint32_t ports, double msl_s) {
    g = Result();
    double t0 = Wall();
    g_n = n;
    g_ports = ports;
    g_interval = Seconds(1.0 / rate);
    Config::SetDefault("ns3::TcpSocketBase::MaxSegLifetime", DoubleValue(msl_s));

    NodeContainer nodes;
    nodes.Create(2);
    PointToPointHelper p2p;
    p2p.SetDeviceAttribute("DataRate", StringValue("1Gbps"));
    p2p.SetChannelAttribute("Delay", StringValue("1ms"));
    NetDeviceContainer devs = p2p.Install(nodes);
    InternetStackHelper stack;
    stack.Install(nodes);
    Ipv4AddressHelper addr;
    addr.SetBase("10.211.55.0", "255.255.255.0");
    Ipv4InterfaceContainer ifs = addr.Assign(devs);
    g_clientNode = nodes.Get(0);
    g_server = ifs.GetAddress(1);

    for (uint32_t k = 0; k < ports; k++) {
        Ptr<Socket> ls = Socket::CreateSocket(nodes.Get(1), TcpSocketFactory::GetTypeId());
        ls->Bind(InetSocketAddress(Ipv4Address::GetAny(), kBasePort + k));
        ls->Listen();
        ls->SetAcceptCallback(MakeCallback(&AcceptAll), MakeCallback(&ServerAccepted));
    }
    Simulator::Schedule(Seconds(0), &ClientNext, 0u);
    Simulator::Stop(Seconds(n / rate + 1.0));
    double t1 = Wall();
    g.setup_s = t1 - t0;
    Simulator::Run();
    double t2 = Wall();
    g.run_s = t2 - t1;
    g.events = Simulator::GetEventCount();
    g.sim_s = Simulator::Now().GetSeconds();
    g_clientNode = nullptr;
    Simulator::Destroy();
    g.destroy_s = Wall() - t2;
    return g;
}
}  // namespace twbench
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--ports", type=int, default=3)
    ap.add_argument("--msl", type=float, default=30.0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    from ns import ns  # only inside the ns-3 virtual environment; slow (~15 s)

    t1 = time.perf_counter()
    ns.cppyy.cppdef(PROGRAM)
    t2 = time.perf_counter()
    cpu0 = time.process_time()
    r = ns.cppyy.gbl.twbench.Run(args.connections, args.rate, args.ports, args.msl)
    cpu = time.process_time() - cpu0
    wall = r.setup_s + r.run_s  # as timewait's figure: build and run, not tear down
    import importlib.metadata as md

    n = args.connections
    print(json.dumps({
        "workload": "W3", "simulator": "ns-3", "ns3_version": md.version("ns3"),
        "connections": n, "rate": args.rate, "ports": args.ports, "msl_s": args.msl,
        "wall_s": wall, "cpu_s": cpu, "lifecycles_per_s": n / wall,
        "events": int(r.events), "events_per_s": int(r.events) / wall,
        "started": int(r.started), "connected": int(r.connected), "succeeded": int(r.succeeded),
        "failed": int(r.failed), "served": int(r.served), "time_wait": int(r.time_wait),
        "ok": int(r.succeeded) == n,
        "sim_time_s": r.sim_s, "setup_s": r.setup_s, "run_s": r.run_s, "destroy_s": r.destroy_s,
        "import_s": t1 - t0, "compile_s": t2 - t1,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
