"""简体中文：每个场景的故事、对比提示、检查项名称，以及控制台的标题。

Keys are the English texts (see :mod:`timewait.i18n`): a scenario's name for ``STORIES`` and
``CONTRASTS``, the English template for ``TEXTS`` and ``CAPTIONS``. Technical terms are written
as Chinese engineers write them: TIME_WAIT, MSL, 四次挥手, 主动关闭方, 四元组, 端口耗尽,
延迟重复报文, 连接池; state names, sysctl names, flags and error names stay as the kernel
spells them. Values a template carries (``{}`` or ``{0}``) are put in unchanged.
"""

from __future__ import annotations

STORIES: dict[str, str] = {
    "nc-timewait": """\
c2（10.211.55.10）上运行 `nc -l 8888`，c1（10.211.55.5）上运行 `nc 10.211.55.10 8888`。
c1 发一行数据，然后按 Ctrl+C 先关闭：c1 经过 FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT，
c2 经过 CLOSE_WAIT -> LAST_ACK -> CLOSED。只有主动关闭方会让这个四元组停在 TIME_WAIT，
时长为 2 MSL：Linux 把它固定为 60 秒（TCP_TIMEWAIT_LEN），教科书里是 2 x 120 秒。""",
    "ttl": """\
IP 头里 8 位的 TTL 是跳数预算，不是时钟。c1（10.211.55.5）以 TTL 12 发包，与本章的图一致：
R1 转发时剩 11，R2 剩 10……R11 剩 1，R12 减到 0 时丢弃它并回 ICMP time-exceeded；
c2（10.211.55.10）在 14 个路由器之外，所以 c1 永远到不了。c1 旁边的 c3（10.211.55.6）
用 Linux 默认的 TTL 64，到达时还剩 50。
TCP 不能靠 TTL 来限定报文的寿命，于是假设了一个最大报文段生存时间 MSL：这里的网络会丢弃
任何比 MSL 更老的报文（linux 配置下为 30 秒）。c3 的一个数据段被扣留 45 秒：它在到达下一个
路由器时已经比 MSL 老，被丢弃。另一个被扣留 20 秒：它迟到了——TTL 却与只走了几毫秒的报文
一样——c2 把它当作旧的重复报文丢掉，因为 c3 早已重传过。""",
    "delayed-duplicate": """\
本章的例子：客户端 10.211.55.2:61594，服务端 10.211.55.10:8080。客户端发送三行，网络把第三个
报文段（本章的 SEQ=3）延迟 5 秒。客户端重传了它，所以旧连接完整结束，客户端先关闭。随后它用
同一个四元组（SO_REUSEADDR 加 bind(61594)）打开新连接，再发三行新数据。"old-3" 的那份
过期副本仍在路上。

有 TIME_WAIT 时四元组一直被占着：connect() 在 60 秒内（2 MSL，且长于网络允许报文存活的 30 秒
MSL）都以 EADDRNOTAVAIL 失败，所以早在新连接出现之前，过期报文就已到达并被拒绝，或者死在
网络里。加 --set timewait=off 时端口立即被复用，过期报文落进新连接。要落进新的接收窗口，它的
序列号必须对得上，这需要巧合：真实的 ISN 来自一个时钟（每 64 ns 加 1，274.9 秒回绕一次）加上
四元组的哈希，所以新的连接实例通常从比旧连接远几百万字节的地方开始。本场景安排了这个巧合——
两个新 ISN 都等于旧的，如同回绕之后（--set isn_shift=N 移动客户端的 ISN）——并关闭了时间戳，
因为 PAWS 会凭旧时间戳拒绝过期报文（--set timestamps=on）。于是服务端在该读到 "new-3" 的
地方读到了 "old-3"：这就是延迟重复报文。""",
    "lost-last-ack": """\
c1（10.211.55.5:60494，显式 bind）与 c2（10.211.55.10:8888）上的服务端通信，并先关闭。
c2 回以自己的 FIN；c1 发出四次挥手的最后一个 ACK——网络把它丢了。c2 停在 LAST_ACK，
重传定时器到期时再发一次 FIN。
有 TIME_WAIT 时 c1 还认得这个连接：它重新 ACK 这个 FIN，重启 2 MSL 定时器，c2 干净地关闭。
在此期间四元组不可用：c1 从端口 60494 发起的 connect() 以 EADDRNOTAVAIL 失败，直到 TIME_WAIT
结束（这里像本章的世界一样关闭了时间戳；开着时间戳时 Linux 会让已 bind 的套接字立即接管这个
TIME_WAIT，PS-1）。
没有 TIME_WAIT（--set timewait=off）时 c1 立即 CLOSED 并马上复用端口 60494；它的 SYN 遇到仍在
LAST_ACK 的 c2。本章说 c2 回 RST、握手失败：这是 RFC 793 对落在接收窗口内的 SYN 的规则
（--profile chapter 或 rfc793），本场景也按本章的假设把 SYN 放进窗口（--set syn_in_window=off
让 ISN 由时钟决定，远在窗口之外：RFC 793 这时回一个 ACK）。Linux 从 3.6 起对这样的 SYN 一律回
挑战 ACK（challenge ACK）；处于 SYN_SENT 的 c1 用 seq=SEG.ACK 的 RST 重置旧连接，8 ms 后
（TCP_TIMEOUT_MIN）重发 SYN，新连接建立（LA-1..LA-3）。""",
    "two-msl": """\
为什么 TIME_WAIT 是 2 MSL 而不是 1 个？一个 MSL 留给主动关闭方最后的 ACK 到达对端，一个 MSL
留给对端重传的 FIN 回来。ACK 到达之前，处于 LAST_ACK 的对端会不断重发 FIN；ACK 最多走 MSL，
每个重发的 FIN 又最多走 MSL。所以对端能发出的最后一个 FIN，最迟在最后的 ACK 发出后 2 MSL
到达——如果那时 TIME_WAIT 还在，它就会得到应答（也永远不会被误当成同一四元组上新连接的报文）。

本场景先按网络的 MSL 和配置的 TIME_WAIT 算出这条时间线，再演出最坏情况：c1
（10.211.55.5:60494）先关闭；网络把它最后的 ACK 以及 c2（10.211.55.10:8888）在此期间重发的
每个 FIN 都延迟 MSL - 0.1 秒。每个重发的 FIN 都在 c1 的 TIME_WAIT 之内到达，最后一个在 ACK 之后
2 MSL 之内，并被重新 ACK。c1 开着 tcp_rfc1337=1：c2 在慢吞吞的 ACK 到达后关闭，之后会对重复的
ACK 回 RST，否则这些 RST 会提前结束 TIME_WAIT（TIME-WAIT assassination，RFC 1337）。""",
    "redis-short-connections": """\
本章的循环 `for i in {1..10000}; do echo ping | nc localhost 6379; done`：每个请求打开一个连接，
拿到 +PONG 后客户端先关闭，所以每个请求都在客户端留下一个 TIME_WAIT 套接字，持续 60 秒，
服务端一个也没有。这里客户端（c1）和类 Redis 服务端（redis）是两台主机，两边的套接字可以分开
统计。数量受 `tcp_max_tw_buckets` 限制（约 2 GiB 内存的机器上是 8192：本章里的数字）：超过之后，
关闭的连接跳过 TIME_WAIT，由 TcpExtTCPTimeWaitOverflow 计数。连接池（`--set pool=N`）用 N 个
长连接承载同样的请求：完全没有 TIME_WAIT。""",
    "timestamps": """\
TCP 时间戳（RFC 7323）是 kind 8、length 10 的选项：TSval 和 TSecr 各 4 字节。主动方在
net.ipv4.tcp_timestamps 不为 0 时在 SYN 里提供它；被动方只有在自己的设置也允许时才在 SYN-ACK
里带上；只要有一方在握手时没带，之后双方都不用它（本章的第二个抓包）。TSval 是一个 1 ms 的时钟
加一个偏移（模式 1：每个四元组一个偏移，两个连接的时钟看起来毫不相关；模式 2：没有偏移，
TSval = 开机时间的毫秒数）；TSecr 回显对端最新的 TSval。不需要时钟同步：只要求每个发送方
自己的值递增。""",
    "tw-reuse": """\
c1 只能用本地端口 40000（ip_local_port_range = 40000 40000）。它向 c2:8888 问一个问题后先关闭，
于是 10.211.55.5:40000 -> 10.211.55.10:8888 在 c1 上处于 TIME_WAIT。
在 tcp_tw_reuse=1 且两端都开着时间戳时，tcp_tw_reuse_delay（1 秒）之后的 connect() 会接管这个
四元组（tcp_twsk_unique）：新 SYN 的序列号是旧的 snd_nxt + 65537，并回显服务端最后的 TSval。
旧连接最后一个数据段的重复副本被网络延迟，落进了新连接：它的时间戳更旧，于是被 PAWS 丢弃。
客户端最后的 ACK 丢了，新 SYN 到达时服务端仍在 LAST_ACK：它回挑战 ACK，处于 SYN_SENT 的 c1
用 seq = SEG.ACK 的 RST 重置它，并立即重发 SYN。""",
    "tw-recycle-nat": """\
两台办公室电脑 A（192.168.1.10，已开机 10 天）和 B（192.168.1.11，开机一小时）经同一个 NAT
（203.0.113.1）访问 web 服务器 198.51.100.10:80。服务器跑 Linux 4.9，开着
net.ipv4.tcp_tw_recycle=1，并且先关闭每个 HTTP/1.0 连接，所以 TIME_WAIT 在服务器上。开启 recycle
时，进入 TIME_WAIT 会把对端最新的 TSval 存进按对端 IP 记录的缓存（RC-1），而且 TIME_WAIT 只持续
3.5 x RTO（RC-2）。60 秒内从该 IP 来的新 SYN，若 TSval 比缓存值小 1 以上，就被悄悄丢弃，记为
PAWSPassive（RC-3）。时间戳就是发送方开机以来的毫秒数（4.10 之前没有偏移）：A 的比 B 的领先
10 天。两者都来自 203.0.113.1，所以 A 被服务过之后，B 就成了一个时钟倒退的对端：没有 SYN-ACK，
没有 RST，只有重传的 SYN 和 connect() 超时（RC-4）。
tcp_tw_recycle 已在 Linux 4.12 移除；本场景默认在 --profile linux-4.9 下运行。""",
    "nat": """\
私有网络里的三台主机（192.168.1.10-12）通过一个 NAT 访问类 Redis 服务器 198.51.100.10:6379，
NAT 唯一的公网地址是 203.0.113.1。每个连接得到一条 conntrack 表项：私有地址:端口 <-> 公网
地址:端口，指向该服务器。发出的报文换上公网源地址和端口，回包换回私有的；每次改写都会修正
IPv4 和 TCP 校验和。服务器只看得到 203.0.113.1。NAT 的公网端口是它自己有限的资源：--to-ports
只有 2 个端口时，指向同一服务器的第三个并发连接没有端口可用，它的 SYN 死在 NAT 上。关闭的连接
仍保留它的表项，也就保留着端口，在 conntrack 的 TIME_WAIT 里待 120 秒。""",
    "max-rate": """\
本章的习题：MSL = 60 秒、端口 1025-65535 时，一台主机最快能以多高的速率新建并主动关闭连接？
每个连接让它的本地端口对该目的地停在 TIME_WAIT 2 x MSL = 120 秒，所以每秒最多
64511 个端口 / 120 秒 = 537.6 个新连接。模拟分别以略低于和略高于这个速率运行循环（教科书配置：
TIME_WAIT = 2 x MSL），前者能持续，后者在所有端口都在等待时以 EADDRNOTAVAIL 失败。
Linux 按奇偶两轮遍历端口；奇数长度的范围也会用到每个端口（从底部以上任何起点都能走到最高的
端口：内核实验室测得 11 个端口建立 11 个连接）。""",
    "quiz": """\
本章最后有一道题。关于 TIME_WAIT，哪些说法是对的？
  A. 它让全双工连接的关闭变得可靠；
  B. 它是三次握手中的一个状态；
  C. 它让新连接不受旧连接延迟报文的干扰；
  D. 它让旧连接的报文在网络中消失。
每个说法都由相关场景的小规模运行给出证据：A 看 lost-last-ack（TIME_WAIT 重新 ACK 重复的 FIN；
没有它，对端的 LAST_ACK 会撞上新的 SYN），B 看 nc-timewait 和引擎的状态表（TIME_WAIT 只出现在
FIN 交换之后），C 看 delayed-duplicate（有 TIME_WAIT 时数据完整，没有时被破坏），D 看 ttl
（网络丢弃比 MSL 更老的报文）以及 delayed-duplicate 和 two-msl（四元组能再次使用之前，旧报文
都已消失）。答案：A、C、D。""",
    "port-exhaustion": """\
客户端关闭的每个连接，都让它的本地端口对那一个目的地（服务端地址和端口）停在 TIME_WAIT 60 秒。
connect() 从 ip_local_port_range（默认 28232 个）里挑端口，并且需要唯一的四元组，所以 60 秒内
建立 28232 个连接之后，它以 EADDRNOTAVAIL 失败，直到最早的 TIME_WAIT 到期：这就是端口耗尽。
更多目的地会成倍增加可用的四元组；开启 tcp_tw_reuse=1（并有时间戳）时，connect() 改为接管
超过 1 秒的 TIME_WAIT 表项。""",
    "simultaneous-close": """\
两端的应用在对方的 FIN 到达之前都已关闭时，每一端在收到对方 FIN 时都处于 FIN_WAIT_1：它 ACK
这个 FIN 并进入 CLOSING；自己的 FIN 被 ACK 后进入 TIME_WAIT（tcp_fin、tcp_rcv_state_process）。
所以同时关闭会让两端都留下 TIME_WAIT，各自整整 60 秒。""",
    "linger": """\
l_onoff = 1、l_linger = 0 的 SO_LINGER 把 close() 变成中止（tcp_disconnect）：客户端发 RST+ACK
而不是 FIN，连接直接进入 CLOSED，对端下一次读以 ECONNRESET 失败。哪一边都没有 TIME_WAIT，所以
端口立即可用，但也没有任何东西保护这个四元组上的新连接免受旧连接延迟报文的干扰。Linux 把它
计入 TcpExtTCPAbortOnData。""",
}

CONTRASTS: dict[str, str] = {
    "nc-timewait": "试试 --set server_close=on（TIME_WAIT 转到 c2）、--profile rfc793（240 秒）或 "
    "--profile rfc793 --set msl=30（60 秒）。",
    "ttl": "试试 --set hops=8（c1 以 TTL 4 到达）、--sysctl c1:net.ipv4.ip_default_ttl=64，或 --set msl=60"
    "（45 秒的报文段这时能活下来并到达）。",
    "delayed-duplicate": "试试 --set timewait=off（数据被破坏），再加上 --set timestamps=on（PAWS 救了它）"
    "或 --set isn_shift=100000（过期报文落在窗口外）。",
    "lost-last-ack": "试试 --set timewait=off，再配合 --profile chapter 或 --profile rfc793；"
    "--set timestamps=on 展示 Linux 让已 bind 的端口接管 TIME_WAIT。",
    "two-msl": "试试 --set msl=45（Linux 的 TIME_WAIT 固定 60 秒：2 MSL = 90 秒放不下了）、"
    "--profile rfc793 --set msl=45（TIME_WAIT = 2 MSL = 90 秒，又放得下）或 --set rfc1337=off。",
    "redis-short-connections": "试试 --sysctl c1:net.ipv4.tcp_max_tw_buckets=8192、--set mem=2G 或 --set pool=8。",
    "timestamps": "试试 --sysctl c2:net.ipv4.tcp_timestamps=0（SYN-ACK 不带 TS：双方都不用）或 "
    "--sysctl c1:net.ipv4.tcp_timestamps=2（没有偏移：TSval = 开机毫秒数）。",
    "tw-reuse": "试试 --sysctl c1:net.ipv4.tcp_tw_reuse=0（EADDRNOTAVAIL）、--sysctl '*:net.ipv4.tcp_timestamps=0'"
    "（没有时间戳就不能复用）、--set reconnect_after=0.5（比 tcp_tw_reuse_delay 年轻）或 --set lost_ack=off。",
    "tw-recycle-nat": "试试 --sysctl server:net.ipv4.tcp_tw_recycle=0（两台都被服务）、--set client_ts=random"
    "（4.10 的每连接偏移：丢弃随机落到两台客户端上）、--set a_every=0（B 等过 60 秒的缓存）或 "
    "--profile linux（没有这个 sysctl）。",
    "nat": "试试 --set nat_ports=65535（每个客户端都能通过；c1 保留端口 40000，c2 被重新映射）、"
    "--set clients=2 或 --set ct_time_wait=30。",
    "max-rate": "试试 --set msl=30（速率翻倍）或 --set 'ports=32768-60999'。",
    "quiz": "每条证据本身都是一个场景：timewait run lost-last-ack、nc-timewait、delayed-duplicate、ttl、two-msl。",
    "port-exhaustion": "试试 --set destinations=2、--sysctl c1:net.ipv4.tcp_tw_reuse=1 或 "
    "--sysctl 'c1:net.ipv4.ip_local_port_range=1024 65535'。",
    "simultaneous-close": "对比 nc-timewait：那里 c2 在 c1 的 FIN 到达之后才关闭，只有 c1 等待。",
    "linger": "试试 --set linger0=off：发 FIN，客户端进入 TIME_WAIT。",
}

# English template -> Chinese template. Check names, the sentences a run says, and the values
# that appear inside them (reasons, the quiz's statements).
TEXTS: dict[str, str] = {
    # common.may_reuse: why connect() may or may not take a TIME_WAIT over
    "tcp_tw_reuse={} with timestamps: TIME_WAIT older than tcp_tw_reuse_delay is taken over":
        "tcp_tw_reuse={} 且有时间戳：超过 tcp_tw_reuse_delay 的 TIME_WAIT 会被接管",
    "tcp_timestamps=0: a TIME_WAIT without timestamps can never be reused":
        "tcp_timestamps=0：没有时间戳的 TIME_WAIT 永远不能复用",
    "tcp_tw_reuse=0": "tcp_tw_reuse=0",
    "tcp_tw_reuse=2 reuses only loopback flows, and this one is not":
        "tcp_tw_reuse=2 只复用回环流量，而这条不是",
    # nc-timewait
    "only the active closer enters TIME_WAIT": "只有主动关闭方进入 TIME_WAIT",
    "TIME_WAIT lasts the profile's 2 MSL": "TIME_WAIT 持续该配置的 2 MSL",
    "the entry is gone afterwards": "之后该表项消失",
    "the server received the line": "服务端收到了这一行",
    # ttl
    # (TTL, or hop limit in an IPv6 run, is a value: the checks name it by the run's family)
    "each router decrements {} by one": "每个路由器把 {} 减一",
    "no packet is forwarded or delivered older than MSL": "没有比 MSL 更老的报文被转发或交付",
    "{} {} -> {} after R1 ... -> 1 after R{}": "{} {} -> 经 R1 后 {} …… -> 经 R{} 后 1",
    "at {} 0 R{} drops it and sends {}": "{} 为 0 时 R{} 丢弃它并发送 {}",
    "c1 never reaches c2, however long it tries": "c1 无论尝试多久都到不了 c2",
    "{} {} -> {} after R1 ... -> {} after R{}": "{0} {1} -> 经 R1 后 {2} …… -> 经 R{4} 后 {3}",
    "with {} routers and {} {} the SYN arrives": "{} 个路由器、{} {} 时 SYN 能到达",
    "c3 with {} {} crosses the same {} routers": "{} {} 的 c3 穿过同样的 {} 个路由器",
    "{} counts hops, not seconds: the late segment has as much {} left as a fresh one":
        "{0} 计的是跳数而不是秒：迟到的报文段剩下的 {1} 和新报文一样多",
    "a segment held {} s (> MSL {} s) is discarded by the network": "被扣留 {} 秒（> MSL {} 秒）的报文段被网络丢弃",
    "a segment held {} s (<= MSL {} s) still arrives, as an old duplicate":
        "被扣留 {} 秒（<= MSL {} 秒）的报文段仍会到达，成为旧的重复报文",
    # delayed-duplicate
    "the old connection's 3rd segment is delayed in the network; its retransmission delivers it":
        "旧连接的第 3 个报文段在网络中被延迟；它的重传把数据送达",
    "the same 4-tuple is used again at once": "同一个四元组立即被再次使用",
    "the delayed segment is still in the network when the new connection opens": "新连接建立时，被延迟的报文段仍在网络中",
    "its sequence numbers fall inside the new connection's receive window": "它的序列号落在新连接的接收窗口内",
    "the stale segment corrupts the new connection's data": "过期报文段破坏了新连接的数据",
    "Without TIME_WAIT the 4-tuple was reused at {} s while the old connection's {} was still in the network; "
    "it arrived at {} s, fitted the new window, and the application read {} instead of {}.":
        "没有 TIME_WAIT，四元组在 {} 秒被复用，而旧连接的 {} 还在网络中；它在 {} 秒到达，落进新窗口，"
        "应用读到的是 {}，而不是 {}。",
    "TIME_WAIT holds {}:{} <-> {}:{}: connect() fails with EADDRNOTAVAIL until it ends":
        "TIME_WAIT 占住 {}:{} <-> {}:{}：在它结束之前 connect() 以 EADDRNOTAVAIL 失败",
    "every segment of the old connection is gone before the new connection's SYN": "新连接的 SYN 之前，旧连接的每个报文段都已消失",
    "the new connection's bytes arrive intact": "新连接的字节完整到达",
    "TIME_WAIT held the 4-tuple for {} s, longer than any segment may live (MSL {} s): the delayed {} ended at "
    "{} s ({}), long before the new connection opened at {} s, whose data arrived intact.":
        "TIME_WAIT 占住四元组 {} 秒，比任何报文段允许存活的时间都长（MSL {} 秒）：被延迟的 {} 在 {} 秒结束"
        "（{}），远早于新连接在 {} 秒建立，新连接的数据完整到达。",
    "TIME_WAIT held the 4-tuple for {} s, longer than the path held the segment: the delayed {} ended at "
    "{} s ({}), long before the new connection opened at {} s, whose data arrived intact.":
        "TIME_WAIT 占住四元组 {} 秒，比路径扣住该报文段的时间更长：被延迟的 {} 在 {} 秒结束（{}），"
        "远早于新连接在 {} 秒建立，新连接的数据完整到达。",
    "the stale segment never enters the new connection's data": "过期报文段始终没有进入新连接的数据",
    "Without TIME_WAIT the delayed segment was still travelling when the 4-tuple was reused, but {}, so the data "
    "arrived intact this time. TIME_WAIT is the guard that does not depend on such luck.":
        "没有 TIME_WAIT，四元组被复用时延迟报文仍在路上，但{}，所以这次数据碰巧完整到达。"
        "TIME_WAIT 才是不靠运气的保护。",
    "its sequence numbers did not fit the new window": "它的序列号不在新窗口内",
    # lost-last-ack
    "the active closer's last ACK is lost": "主动关闭方的最后一个 ACK 丢失",
    "c2, still in LAST_ACK, sends its FIN again when its RTO fires": "仍在 LAST_ACK 的 c2 在 RTO 到期时再次发送 FIN",
    "c1's TIME_WAIT answers the repeated FIN with an ACK": "c1 的 TIME_WAIT 用 ACK 应答重复的 FIN",
    "and restarts its timer: {} s from that moment": "并重启定时器：从那一刻起 {} 秒",
    "c2 closes cleanly: LAST_ACK -> CLOSED on that ACK, no RST": "c2 干净地关闭：收到该 ACK 后 LAST_ACK -> CLOSED，没有 RST",
    "while TIME_WAIT holds {}:{}, connect() from it fails with EADDRNOTAVAIL":
        "TIME_WAIT 占住 {}:{} 期间，从它发起的 connect() 以 EADDRNOTAVAIL 失败",
    "after TIME_WAIT the same port connects at the first try": "TIME_WAIT 结束后，同一端口第一次尝试就能连上",
    "TIME_WAIT was on: c1 answered c2's repeated FIN at {} s and restarted its {} s timer, so c2 closed cleanly. "
    "The price: port {} to {}:{} stayed unusable until {} s ({} connect() calls got EADDRNOTAVAIL). "
    "Try --set timewait=off.":
        "TIME_WAIT 开着：c1 在 {0} 秒应答了 c2 重复的 FIN 并重启 {1} 秒的定时器，所以 c2 干净地关闭。"
        "代价：到 {3}:{4} 的端口 {2} 在 {5} 秒之前不可用（{6} 次 connect() 得到 EADDRNOTAVAIL）。"
        "试试 --set timewait=off。",
    "c1 reuses port {} at once": "c1 立即复用端口 {}",
    "its SYN meets c2 still in LAST_ACK": "它的 SYN 遇到仍在 LAST_ACK 的 c2",
    "c1, in SYN_SENT, sends RST seq = SEG.ACK, which ends c2's LAST_ACK (LA-3)":
        "处于 SYN_SENT 的 c1 发送 seq = SEG.ACK 的 RST，结束了 c2 的 LAST_ACK（LA-3）",
    "c1 resends the SYN after {} and the handshake completes": "c1 在 {} 之后重发 SYN，握手完成",
    "TCP_TIMEOUT_MIN ({} ms)": "TCP_TIMEOUT_MIN（{} ms）",
    "its RTO ({} s)": "它的 RTO（{} 秒）",
    "the reconnect goes the way this configuration predicts": "重连按该配置预言的方式进行",
    "c2 answers the SYN with an RST (seq 0, ack = SYN + 1) and drops its LAST_ACK connection "
    "(RFC 793, the chapter's account)":
        "c2 以 RST（seq 0，ack = SYN + 1）应答这个 SYN，并丢掉处于 LAST_ACK 的连接（RFC 793，本章的说法）",
    "the handshake fails: connect() gets ECONNREFUSED": "握手失败：connect() 得到 ECONNREFUSED",
    "Without TIME_WAIT c1 reused port {} at once and its SYN, inside c2's window, found c2 still in LAST_ACK. "
    "As the chapter says, c2 answered with RST and the handshake failed: connect() got {}. "
    "(An out-of-window SYN would get an ACK instead: --set syn_in_window=off.)":
        "没有 TIME_WAIT，c1 立即复用端口 {}，它落在 c2 窗口内的 SYN 遇到仍在 LAST_ACK 的 c2。"
        "正如本章所说，c2 回了 RST，握手失败：connect() 得到 {}。"
        "（窗口外的 SYN 则会得到一个 ACK：--set syn_in_window=off。）",
    "c2 answers the out-of-window SYN with an ACK, not a reset (RFC 793 p. 69)":
        "c2 对窗口外的 SYN 回 ACK，而不是重置（RFC 793 第 69 页）",
    "c2 answers with a challenge ACK: seq = its snd_nxt, ack = its rcv_nxt (LA-1, LA-2)":
        "c2 回挑战 ACK：seq = 它的 snd_nxt，ack = 它的 rcv_nxt（LA-1、LA-2）",
    "Without TIME_WAIT c1 reused port {} at once; its SYN, outside c2's window, found c2 still in LAST_ACK and got "
    "an ACK, which c1 answered with an RST that closed c2's old connection. The SYN resent {} s later opened the "
    "new one. The chapter's RST needs a SYN inside the window (--set syn_in_window=on).":
        "没有 TIME_WAIT，c1 立即复用端口 {}；它落在 c2 窗口外的 SYN 遇到仍在 LAST_ACK 的 c2，得到一个 ACK，"
        "c1 以 RST 回应，关掉了 c2 的旧连接。{} 秒后重发的 SYN 建立了新连接。"
        "本章说的 RST 需要 SYN 落在窗口内（--set syn_in_window=on）。",
    "Without TIME_WAIT c1 reused port {} at once and its SYN found c2 still in LAST_ACK. Linux does not reset it: "
    "c2 sent a challenge ACK, c1 answered with an RST that closed c2's old connection, and resent its SYN; the new "
    "connection was up {} s after the first SYN. --profile chapter shows the textbook's RST instead.":
        "没有 TIME_WAIT，c1 立即复用端口 {}，它的 SYN 遇到仍在 LAST_ACK 的 c2。Linux 不会重置它：c2 发挑战 ACK，"
        "c1 以 RST 回应、关掉 c2 的旧连接，然后重发 SYN；新连接在第一个 SYN 之后 {} 秒建立。"
        "--profile chapter 则展示教科书里的 RST。",
    # two-msl
    "the computed worst case fits in TIME_WAIT": "算出的最坏情况放得进 TIME_WAIT",
    "the computed worst case does NOT fit in TIME_WAIT": "算出的最坏情况放不进 TIME_WAIT",
    "the last ACK takes nearly MSL to reach c2": "最后的 ACK 花了将近 MSL 才到达 c2",
    "while the ACK travels, c2 repeats its FIN from LAST_ACK, each delayed nearly MSL":
        "ACK 在路上时，c2 在 LAST_ACK 中重复发送 FIN，每个都被延迟将近 MSL",
    "the latest repeated FIN arrives within 2 MSL of the last ACK": "最晚的重复 FIN 在最后的 ACK 之后 2 MSL 内到达",
    "the simulation agrees with the computed timeline": "模拟结果与算出的时间线一致",
    "the close happens": "关闭确实发生",
    "every repeated FIN finds c1's TIME_WAIT and is ACKed; c2 is never reset":
        "每个重复的 FIN 都遇到 c1 的 TIME_WAIT 并被 ACK；c2 从未被重置",
    "The last ACK took {} s and the latest repeated FIN arrived {} s after it: inside 2 MSL = {} s, and inside "
    "TIME_WAIT ({} s).":
        "最后的 ACK 花了 {} 秒，最晚的重复 FIN 在它之后 {} 秒到达：在 2 MSL = {} 秒之内，也在 TIME_WAIT（{} 秒）之内。",
    "without rfc1337 an RST from c2 ends c1's TIME_WAIT early; later FINs find no socket":
        "没有 rfc1337 时，c2 的 RST 提前结束了 c1 的 TIME_WAIT；之后的 FIN 找不到套接字",
    "With tcp_rfc1337=0 the worst case still fits in 2 MSL, but c2 -- closed once the slow ACK arrived -- answered "
    "a re-ACK with RST, which killed c1's TIME_WAIT early (TIME-WAIT assassination, RFC 1337): the later repeated "
    "FINs met no socket and were reset.":
        "tcp_rfc1337=0 时最坏情况仍放得进 2 MSL，但 c2（慢 ACK 到达后已关闭）对重发的 ACK 回了 RST，"
        "提前杀死了 c1 的 TIME_WAIT（TIME-WAIT assassination，RFC 1337）：之后重复的 FIN 找不到套接字，被重置。",
    "With MSL {} s the worst case needs {} s but TIME_WAIT lasts {} s: {} repeated FIN(s) arrived after it would "
    "have ended (what they met: {}). A TIME_WAIT restarted by an earlier FIN can still catch them; one that is "
    "not, cannot.":
        "MSL 为 {} 秒时最坏情况需要 {} 秒，但 TIME_WAIT 只有 {} 秒：{} 个重复的 FIN 在它本该结束之后到达"
        "（遇到的是：{}）。被更早的 FIN 重启过的 TIME_WAIT 还能接住它们；没被重启的就接不住。",
    # redis-short-connections
    "every request was answered": "每个请求都得到了应答",
    "the server keeps no TIME_WAIT (the client closes first)": "服务端没有 TIME_WAIT（客户端先关闭）",
    "connections past the cap skip TIME_WAIT and are counted": "超过上限的连接跳过 TIME_WAIT 并被计数",
    "a pool leaves at most one TIME_WAIT per pooled connection": "连接池每个池化连接最多留下一个 TIME_WAIT",
    "With a pool of {} connections the {} requests opened only {} connections; only closing the pool at the end "
    "leaves {} TIME_WAIT instead of {}.":
        "用 {} 个连接的连接池，{} 个请求只打开了 {} 个连接；只有最后关闭连接池时留下 {} 个 TIME_WAIT，而不是 {} 个。",
    "one TIME_WAIT per request on the client, up to tcp_max_tw_buckets": "客户端上每个请求一个 TIME_WAIT，最多 tcp_max_tw_buckets 个",
    "one TIME_WAIT per request of the last TIME_WAIT period, up to tcp_max_tw_buckets":
        "最近一个 TIME_WAIT 周期内每个请求一个 TIME_WAIT，最多 tcp_max_tw_buckets 个",
    "tcp_max_tw_buckets = {}: {} connections closed without TIME_WAIT (TcpExtTCPTimeWaitOverflow); their 4-tuples "
    "lost the protection against old duplicates.":
        "tcp_max_tw_buckets = {}：{} 个连接关闭时没有 TIME_WAIT（TcpExtTCPTimeWaitOverflow）；"
        "它们的四元组失去了对旧重复报文的保护。",
    "All {} client-closed connections are in TIME_WAIT on c1 for 60 s; try --set pool=8 to see a connection pool "
    "avoid it.":
        "客户端关闭的全部 {} 个连接都在 c1 上处于 TIME_WAIT，持续 60 秒；试试 --set pool=8，看连接池如何避免它。",
    # timestamps
    "the SYN offers timestamps iff the client's tcp_timestamps != 0": "当且仅当客户端的 tcp_timestamps != 0 时 SYN 提供时间戳",
    "the SYN-ACK carries timestamps only if both ends allow them": "只有两端都允许时 SYN-ACK 才带时间戳",
    "after the handshake timestamps are on every segment, or on none": "握手之后，要么每个报文段都带时间戳，要么都不带",
    "TSecr echoes the peer's latest TSval": "TSecr 回显对端最新的 TSval",
    "each side's TSval is a monotonic 1 ms clock": "每一方的 TSval 都是单调的 1 ms 时钟",
    "on the wire: kind 8, length 10, TSval and TSecr 4 bytes each, TSecr 0 in the SYN":
        "线上格式：kind 8，length 10，TSval 和 TSecr 各 4 字节，SYN 里 TSecr 为 0",
    "One side left timestamps out of the handshake, so neither side uses them: no PAWS, and no tcp_tw_reuse for "
    "these connections.":
        "有一方在握手时没带时间戳，所以双方都不用它：这些连接没有 PAWS，也不能 tcp_tw_reuse。",
    "mode 2: TSval = the host's uptime in ms (no offset)": "模式 2：TSval = 主机开机以来的毫秒数（没有偏移）",
    "mode 1: each 4-tuple has its own random offset, so two connections' TSvals are unrelated":
        "模式 1：每个四元组有自己的随机偏移，所以两个连接的 TSval 毫无关系",
    # tw-reuse
    "connect() took over the TIME_WAIT 4-tuple (TcpExtTWRecycled)": "connect() 接管了处于 TIME_WAIT 的四元组（TcpExtTWRecycled）",
    "the new SYN's seq is the old snd_nxt + 65537 (PS-6)": "新 SYN 的 seq 是旧的 snd_nxt + 65537（PS-6）",
    "the new SYN echoes the server's last timestamp (TSecr != 0)": "新 SYN 回显服务端最后的时间戳（TSecr != 0）",
    "the delayed duplicate of the old answer is dropped by PAWS": "旧应答的延迟重复报文被 PAWS 丢弃",
    "the new connection gets exactly its own answer": "新连接恰好收到它自己的应答",
    "connect() cannot take the TIME_WAIT 4-tuple: EADDRNOTAVAIL": "connect() 不能使用处于 TIME_WAIT 的四元组：EADDRNOTAVAIL",
    "No reuse because {}: with the only local port in TIME_WAIT the 4-tuple stays taken for 60 s.":
        "不能复用，因为 {}：唯一的本地端口处于 TIME_WAIT，这个四元组被占用 60 秒。",
    "the SYN meets LAST_ACK: challenge ACK, RST seq = SEG.ACK, SYN resent, ESTABLISHED (LA-1..3)":
        "SYN 遇到 LAST_ACK：挑战 ACK，RST seq = SEG.ACK，重发 SYN，ESTABLISHED（LA-1..3）",
    # tw-recycle-nat
    "the server's timestamp cache has one entry for both clients: the NAT's address":
        "服务器的时间戳缓存里两个客户端只有一条：NAT 的地址",
    "A, the client with the faster clock, is served every time": "时钟更快的客户端 A 每次都被服务",
    "B's SYNs are dropped silently: TcpExtPAWSPassive, no SYN-ACK, no RST": "B 的 SYN 被悄悄丢弃：TcpExtPAWSPassive，没有 SYN-ACK，没有 RST",
    "B times out or waits out the 60 s cache instead of connecting": "B 连不上：要么超时，要么等过 60 秒的缓存",
    "A's timestamp clock runs {} days ahead of B's (uptimes {} s and {} s, TSval = uptime in ms{}). After the "
    "server closed A's connection it cached A's TSval for {}; B's SYNs from the same address carry TSvals {} days "
    "lower, so tcp_tw_recycle dropped every one of them within 60 s of A's last visit, silently (RC-3, RC-4). {}. "
    "With --sysctl server:net.ipv4.tcp_tw_recycle=0 both are served.":
        "A 的时间戳时钟比 B 领先 {} 天（开机时间 {} 秒和 {} 秒，TSval = 开机毫秒数{}）。服务器关闭 A 的连接后，"
        "为 {} 缓存了 A 的 TSval；B 从同一地址发来的 SYN 的 TSval 要小 {} 天，所以在 A 上次访问后的 60 秒内，"
        "tcp_tw_recycle 悄悄丢弃了其中每一个（RC-3、RC-4）。{}。加 --sysctl server:net.ipv4.tcp_tw_recycle=0 "
        "两台都被服务。",
    " plus a per-host offset": "，再加每台主机的偏移",
    "B's connect() failed with {} after {} s of retransmitted SYNs": "B 的 connect() 在重传 SYN {1} 秒之后以 {0} 失败",
    "B connected only after {} s, once the cached stamp was older than 60 s": "B 直到 {} 秒后、缓存的时间戳超过 60 秒时才连上",
    "B made no request": "B 没有发出请求",
    "with {} timestamp offsets the clocks no longer decide who is dropped: A's SYNs are dropped too, or B gets "
    "through":
        "使用 {} 时间戳偏移时，时钟不再决定谁被丢弃：A 的 SYN 也会被丢，或者 B 能连上",
    "recycle still drops SYNs: random offsets do not make it safe": "recycle 仍在丢 SYN：随机偏移并不能让它变安全",
    "With {} offsets each connection's TSvals start at a random point, unrelated to the previous connection's, "
    "even from the same host. A new SYN is 'older' than the cached TSval about half the time, whichever host sent "
    "it: tcp_tw_recycle delayed or failed {} of A's {} requests and {} of B's {}. The uptimes no longer matter, and "
    "the drops no longer need a NAT: recycle broke for everyone. That is why 4.11 went back to per-host offsets "
    "and 4.12 removed tcp_tw_recycle (RC-5); per-4-tuple offsets returned in 7.0 (stable 6.12+), long after "
    "recycle was gone.":
        "使用 {0} 偏移时，每个连接的 TSval 从随机的位置开始，与上一个连接无关，即使来自同一台主机。无论哪台主机"
        "发出，新 SYN 大约有一半的时候比缓存的 TSval“更旧”：tcp_tw_recycle 让 A 的 {2} 个请求中 {1} 个、"
        "B 的 {4} 个请求中 {3} 个被延迟或失败。开机时间不再重要，丢弃也不再需要 NAT：recycle 对所有人都坏了。"
        "所以 4.11 改回每台主机一个偏移，4.12 移除了 tcp_tw_recycle（RC-5）；每四元组偏移在 7.0"
        "（stable 6.12+）才回来，那时 recycle 早已不在。",
    "Profile {} has no tcp_tw_recycle: it was removed in Linux 4.12 (RC-5), so this server cannot drop SYNs by "
    "timestamp and both clients are served. Run with --profile linux-4.9 (this scenario's default) to see the "
    "breakage.":
        "配置 {} 没有 tcp_tw_recycle：它已在 Linux 4.12 移除（RC-5），所以这台服务器不能按时间戳丢 SYN，"
        "两台客户端都被服务。用 --profile linux-4.9（本场景的默认值）运行，才能看到故障。",
    "without tcp_tw_recycle both clients behind the NAT are served, every time": "没有 tcp_tw_recycle 时，NAT 后的两台客户端每次都被服务",
    "and no connection waits for a SYN retransmission": "而且没有连接需要等 SYN 重传",
    "With tcp_tw_recycle=0 the server keeps no per-IP timestamp cache: a SYN is judged on its own 4-tuple (TW-B), "
    "so A's fast clock is no business of B's. Both are served at once.":
        "tcp_tw_recycle=0 时服务器不保留按 IP 的时间戳缓存：SYN 按它自己的四元组判断（TW-B），A 的时钟快与 B "
        "无关。两台都立即被服务。",
    # nat
    "each private address:port is mapped to its own port of the one public address":
        "每个私有地址:端口都映射到唯一公网地址上它自己的端口",
    "the server sees only the NAT's public address": "服务器只看到 NAT 的公网地址",
    "a closed flow keeps its mapping, and its port, {} s in conntrack TIME_WAIT":
        "关闭的流在 conntrack 的 TIME_WAIT 中保留映射和端口 {} 秒",
    "rewritten packets keep valid IPv4 and TCP checksums": "改写后的报文 IPv4 和 TCP 校验和仍然正确",
    "rewritten packets keep valid TCP checksums (over the IPv6 pseudo-header)":
        "改写后的报文 TCP 校验和（按 IPv6 伪首部计算）仍然正确",
    "out: private source replaced by the public one; in: public destination replaced by the private one":
        "出方向：私有源地址换成公网地址；入方向：公网目的地址换回私有地址",
    "with {} public ports the flow number {} fails: its SYNs die at the NAT": "只有 {} 个公网端口时，第 {} 条流失败：它的 SYN 死在 NAT 上",
    # {1} is English's plural "s": a precision of 0 prints nothing of it.
    "The NAT had {} public port{} ({}-{}) and {} clients wanted one each toward {}:{} at the same time: {} found "
    "none. Linux drops such a SYN (its conntrack entry cannot be inserted), so the client retransmits into the void "
    "({} SYNs dropped) until it gives up after {} s. Try --set nat_ports=65535.":
        "NAT 只有 {0} 个公网端口（{2}-{3}），而 {4} 个客户端同时各要一个去 {5}:{6}：{7} 没有分到。Linux 丢弃这样的 SYN"
        "（它的 conntrack 表项插不进去），于是客户端对着虚空重传（丢了 {8} 个 SYN），直到 {9} 秒后放弃。"
        "试试 --set nat_ports=65535。{1:.0}",
    "with {} public ports every one of the {} clients gets through": "有 {} 个公网端口时，{} 个客户端全都能通过",
    "The NAT had {} public ports for {} clients: no flow was refused.": "NAT 有 {} 个公网端口给 {} 个客户端：没有流被拒绝。",
    "a free source port is kept; a port already used toward the server is remapped":
        "空闲的源端口保持不变；已被用于连向该服务器的端口被重新映射",
    "c1 and c2 both used source port {}: c1 kept it on {}, c2 was moved to {} because the reply tuple {}:{} -> {}:{} "
    "was taken.":
        "c1 和 c2 都用源端口 {}：c1 在 {} 上保留了它，c2 被移到 {}，因为回程元组 {}:{} -> {}:{} 已被占用。",
    # max-rate
    "the closed form gives 537.6/s for the exercise": "公式给出习题的答案 537.6/s",
    "the closed form is ports / (2 x MSL)": "公式是 端口数 / (2 x MSL)",
    "{}/s (just under) is sustained": "{}/s（略低于上限）可以持续",
    "{}/s (just over) runs out of ports with EADDRNOTAVAIL": "{}/s（略高于上限）端口耗尽，出现 EADDRNOTAVAIL",
    "At {}/s the ports freed by expiring TIME_WAIT keep up; at {}/s all ports are waiting after {} s, before the "
    "first one frees at {} s.":
        "{}/s 时，TIME_WAIT 到期释放的端口跟得上；{}/s 时，{} 秒后所有端口都在等待，而第一个端口要到 {} 秒才释放。",
    # port-exhaustion
    "the client runs out of ports with EADDRNOTAVAIL": "客户端端口耗尽，出现 EADDRNOTAVAIL",
    "it fails after using every usable port toward the destination(s) once": "它在把通往目的地的每个可用端口都用过一次后失败",
    "{}. Toward {} the client can hold at most {} 4-tuples at once, each for 60 s: a ceiling of {} connections/s.":
        "{}。对 {} 这个方向，客户端同时最多占用 {} 个四元组，每个 60 秒：上限为每秒 {} 个连接。",
    "tw_reuse keeps connect() going at min(its pace, ports / tcp_tw_reuse_delay)":
        "tw_reuse 让 connect() 以 min(自身速度, 端口数 / tcp_tw_reuse_delay) 持续进行",
    "ports come back when the first TIME_WAIT entries expire (60 s after they began)":
        "最早的 TIME_WAIT 表项到期时（开始后 60 秒）端口重新可用",
    # quiz
    "the answer is A, C, D": "答案是 A、C、D",
    "{} is {}: {}": "{} {}：{}",
    "right": "正确",
    "wrong": "错误",
    "TIME_WAIT makes the close of a full-duplex connection reliable": "TIME_WAIT 让全双工连接的关闭变得可靠",
    "TIME_WAIT is a state of the three-way handshake": "TIME_WAIT 是三次握手中的一个状态",
    "TIME_WAIT keeps new connections safe from delayed segments of old ones": "TIME_WAIT 让新连接不受旧连接延迟报文的干扰",
    "TIME_WAIT lets the old connection's segments vanish from the network": "TIME_WAIT 让旧连接的报文在网络中消失",
    "Answer: {}.": "答案：{}。",
    "--trace-select {} was not applied: {}'s checks read every connection of the trace, so it records them all.":
        "--trace-select {} 未被采用：{} 的检查要读取 trace 中的每个连接，所以 trace 记录全部连接。",
    "  {}  {}  {}": "  {}  {}  {}",
    "lost-last-ack: the last ACK was lost, c1's TIME_WAIT re-ACKed c2's repeated FIN at {} s and c2 closed cleanly":
        "lost-last-ack：最后的 ACK 丢失，c1 的 TIME_WAIT 在 {} 秒重新 ACK 了 c2 重复的 FIN，c2 干净地关闭",
    "the state table enters TIME_WAIT only from {}, all after our FIN was sent":
        "状态表只从 {} 进入 TIME_WAIT，都在我方 FIN 发出之后",
    "delayed-duplicate with TIME_WAIT: the new connection on {}:61594 read {} (intact)":
        "delayed-duplicate 开着 TIME_WAIT：{}:61594 上的新连接读到 {}（完整）",
    "ttl: a segment held {} s died at {}, older than MSL ({} s)": "ttl：被扣留 {} 秒的报文段死在 {}，比 MSL（{} 秒）老",
    # simultaneous-close
    "both ends pass CLOSING": "两端都经过 CLOSING",
    "both ends enter TIME_WAIT (TW-2)": "两端都进入 TIME_WAIT（TW-2）",
    "each for the full 60 s": "各自整整 60 秒",
    # linger
    "close() with SO_LINGER {{1, 0}} sends RST, not FIN": "设置 SO_LINGER {{1, 0}} 的 close() 发送 RST，而不是 FIN",
    "neither side enters TIME_WAIT": "两边都不进入 TIME_WAIT",
    "the peer sees ECONNRESET after reading the data": "对端读完数据后看到 ECONNRESET",
    "Linux counts it as TcpExtTCPAbortOnData": "Linux 把它计入 TcpExtTCPAbortOnData",
    "an ordinary close sends FIN": "普通的 close 发送 FIN",
    "the client, closing first, enters TIME_WAIT": "先关闭的客户端进入 TIME_WAIT",
}

# The console's own words: section rules, the header, the verdict.
CAPTIONS: dict[str, str] = {
    "  profile {}, seed {}, {} s simulated": "  配置 {}，种子 {}，模拟时长 {} 秒",
    "params: ": "参数：",
    "sysctls: ": "sysctl：",
    "trace": "报文跟踪（trace）",
    "(the trace was switched off for this run)": "（本次运行关闭了 trace）",
    "sockets (netstat -atn on each host)": "套接字（各主机上的 netstat -atn）",
    "at {} s, {}:": "{} 秒，{}：",
    "  {}: no sockets": "  {}：没有套接字",
    "  {}:": "  {}：",
    ": ": "：",
    "    ... and {} more ({})": "    …… 另有 {} 个（{}）",
    "ss at {} s": "{} 秒时的 ss",
    "TIME_WAIT summary at the end ({} s)": "结束时（{} 秒）的 TIME_WAIT 汇总",
    "metrics": "指标",
    "checks": "检查",
    "(this scenario has no checks)": "（本场景没有检查项）",
    "all checks passed": "全部检查通过",
    "some checks FAILED": "有检查失败",
    # key moments of the socket tables (report.sockets.key_moments)
    "after the changes at {} ({})": "{}的状态变化之后（{}）",
    "{} s": "{} 秒",
    "{}-{} s": "{}-{} 秒",
    "{} entered {}": "{} 个进入 {}",
    "{} {} gone": "{} 个 {} 消失",
    "state changes": "状态变化",
    "{}: {}": "{}：{}",
    ", ": "，",
    "; ": "；",
}
