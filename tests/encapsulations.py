#!/usr/bin/python3
"""Writes capture files of one packet per encapsulation Docket's structured clauses look through,
made by scapy (a real packet writer, not Docket), for tests/clauses.rs to compare with tshark.

Usage: encapsulations.py OUT_DIR

Every packet has its own inner addresses and ports (documentation ranges only: 198.51.100.0/24,
2001:db8::/32), so a host or port query picks out which encapsulations were looked through.
Files: ether.pcap (Ethernet frames), and one file per other link type.
"""

import sys

from scapy.all import (
    ARP, Dot3, GRE, ICMP, IP, PPP, UDP, TCP, Dot1AD, Dot1Q, Ether, IPerror, IPv6, IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, LLC, PPPoE, Raw, SNAP,
    TCPerror, UDPerror, wrpcap, CookedLinux,
)
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6PacketTooBig
from scapy.layers.ipsec import AH
from scapy.layers.sctp import SCTP
from scapy.layers.vxlan import VXLAN
from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.contrib.mpls import MPLS

E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
PAYLOAD = Raw(b"docket-encapsulation-test")


def v4(n):
    return f"198.51.100.{n}"


def v6(n):
    return f"2001:db8::{n:x}"


def frames():
    """(name, packet) pairs, each packet with addresses/ports of its own."""
    out = []

    def add(name, p):
        out.append((name, p))

    # Plain, for reference.
    add("tcp", E / IP(src=v4(1), dst=v4(2)) / TCP(sport=10001, dport=20001) / PAYLOAD)
    # VLAN stacks: 802.1Q, 802.1ad + 802.1Q, three tags.
    add("vlan", E / Dot1Q(vlan=10) / IP(src=v4(3), dst=v4(4)) / UDP(sport=10002, dport=20002) / PAYLOAD)
    add("qinq", E / Dot1AD(vlan=20) / Dot1Q(vlan=30) / IP(src=v4(5), dst=v4(6)) / TCP(sport=10003, dport=20003))
    add("qinqinq", E / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IPv6(src=v6(7), dst=v6(8)) / UDP(sport=10004, dport=20004) / PAYLOAD)
    # MPLS: a two-label stack over IPv4, and one over IPv6 inside a VLAN.
    add("mpls", E / MPLS(label=100, s=0) / MPLS(label=200, s=1) / IP(src=v4(9), dst=v4(10)) / TCP(sport=10005, dport=20005))
    add("vlan-mpls-v6", E / Dot1Q(vlan=5) / MPLS(label=300, s=1) / IPv6(src=v6(11), dst=v6(12)) / TCP(sport=10006, dport=20006))
    # PPPoE session carrying IPv4 and IPv6.
    add("pppoe", E / PPPoE(sessionid=7) / PPP(proto=0x0021) / IP(src=v4(13), dst=v4(14)) / TCP(sport=10007, dport=443))
    add("pppoe-v6", E / Dot1AD(vlan=8) / Dot1Q(vlan=9) / PPPoE(sessionid=8) / PPP(proto=0x0057) / IPv6(src=v6(15), dst=v6(16)) / UDP(sport=10008, dport=53) / PAYLOAD)
    # LLC/SNAP behind an 802.3 length field, and behind the LLC type (0x8870).
    add("snap", Dot3(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800) / IP(src=v4(17), dst=v4(18)) / UDP(sport=10009, dport=20009) / PAYLOAD)
    add("snap-8870", E / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x86DD) / IPv6(src=v6(117), dst=v6(118)) / UDP(sport=10039, dport=20039) / PAYLOAD)
    # GRE version 0 with checksum, key and sequence number; over IPv6; bridging Ethernet.
    add("gre", E / IP(src=v4(19), dst=v4(20)) / GRE(chksum_present=1, key_present=1, key=5, seqnum_present=1, seqence_number=9) / IP(src=v4(21), dst=v4(22)) / TCP(sport=10010, dport=20010))
    add("gre-v6", E / IPv6(src=v6(23), dst=v6(24)) / GRE() / IPv6(src=v6(25), dst=v6(26)) / UDP(sport=10011, dport=20011) / PAYLOAD)
    add("gre-teb", E / IP(src=v4(27), dst=v4(28)) / GRE(proto=0x6558) / Ether() / Dot1Q(vlan=4) / IP(src=v4(29), dst=v4(30)) / TCP(sport=10012, dport=20012))
    # IP-in-IP, 6in4, 4in6, 6in6.
    add("ipip", E / IP(src=v4(31), dst=v4(32)) / IP(src=v4(33), dst=v4(34)) / TCP(sport=10013, dport=20013))
    add("6in4", E / IP(src=v4(35), dst=v4(36)) / IPv6(src=v6(37), dst=v6(38)) / TCP(sport=10014, dport=20014))
    add("4in6", E / IPv6(src=v6(39), dst=v6(40)) / IP(src=v4(41), dst=v4(42)) / UDP(sport=10015, dport=20015) / PAYLOAD)
    add("6in6", E / IPv6(src=v6(43), dst=v6(44)) / IPv6(src=v6(45), dst=v6(46)) / SCTP(sport=10016, dport=20016))
    # VXLAN with a tagged inner frame; Geneve with an option; GTP-U with an extension header.
    add("vxlan", E / IP(src=v4(47), dst=v4(48)) / UDP(sport=40000, dport=4789) / VXLAN(vni=42) / Ether() / Dot1Q(vlan=6) / IP(src=v4(49), dst=v4(50)) / TCP(sport=10017, dport=20017))
    add("geneve", E / IP(src=v4(51), dst=v4(52)) / UDP(sport=40001, dport=6081) / GENEVE(proto=0x6558, optionlen=2, options=b"\x01\x02\x03\x01\x00\x00\x00\x00") / Ether() / IP(src=v4(53), dst=v4(54)) / UDP(sport=10018, dport=20018) / PAYLOAD)
    add("gtpu", E / IP(src=v4(55), dst=v4(56)) / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=1, E=1, next_ex=0x85) / GTPPDUSessionContainer(type=0, QFI=5, NextExtHdr=0) / IP(src=v4(57), dst=v4(58)) / TCP(sport=10019, dport=20019))
    add("gtpu-v6", E / IP(src=v4(59), dst=v4(60)) / UDP(sport=40002, dport=2152) / GTP_U_Header(teid=2) / IPv6(src=v6(61), dst=v6(62)) / UDP(sport=10020, dport=20020) / PAYLOAD)
    # ICMP errors quoting the packet they are about.
    add("icmp-unreach", E / IP(src=v4(63), dst=v4(64)) / ICMP(type=3, code=3) / IPerror(src=v4(65), dst=v4(66)) / UDPerror(sport=10021, dport=20021))
    add("icmp-ttl", E / IP(src=v4(67), dst=v4(68)) / ICMP(type=11, code=0) / IPerror(src=v4(69), dst=v4(70)) / TCPerror(sport=10022, dport=20022))
    add("icmp-echo", E / IP(src=v4(71), dst=v4(72)) / ICMP(type=8) / IP(src=v4(73), dst=v4(74)) / TCP(sport=10023, dport=20023))
    add("icmp6-unreach", E / IPv6(src=v6(75), dst=v6(76)) / ICMPv6DestUnreach() / IPv6(src=v6(77), dst=v6(78)) / UDP(sport=10024, dport=20024))
    add("icmp6-toobig", E / IPv6(src=v6(79), dst=v6(80)) / ICMPv6PacketTooBig() / IPv6(src=v6(81), dst=v6(82)) / TCP(sport=10025, dport=20025))
    # IPv6 extension headers, AH; fragments, first and not.
    add("v6-ext", E / IPv6(src=v6(83), dst=v6(84)) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / TCP(sport=10026, dport=20026))
    add("v6-ah", E / IPv6(src=v6(85), dst=v6(86)) / AH(spi=1, nh=17, payloadlen=4, icv=b"\x00" * 12) / UDP(sport=10027, dport=20027) / PAYLOAD)
    add("v6-frag-first", E / IPv6(src=v6(87), dst=v6(88)) / IPv6ExtHdrFragment(offset=0, m=1, id=5) / UDP(sport=10028, dport=20028) / PAYLOAD)
    add("v6-frag-later", E / IPv6(src=v6(89), dst=v6(90)) / IPv6ExtHdrFragment(offset=4, m=0, id=6, nh=6) / Raw(bytes(TCP(sport=10029, dport=20029))))
    add("v4-frag-first", E / IP(src=v4(91), dst=v4(92), flags="MF", frag=0, proto=6) / Raw(bytes(TCP(sport=10030, dport=20030))[:16]))
    add("v4-frag-later", E / IP(src=v4(93), dst=v4(94), frag=3, proto=6) / Raw(bytes(TCP(sport=10031, dport=20031))))
    # IPv4 with options; a short frame padded by Ethernet (the padding is not a header).
    add("v4-options", E / IP(src=v4(95), dst=v4(96), options=b"\x01\x01\x01\x00") / UDP(sport=10032, dport=20032) / PAYLOAD)
    add("padded", E / IP(src=v4(97), dst=v4(98), proto=17, len=20) / Raw(bytes(UDP(sport=10033, dport=20033))))
    # Not IP at all: ARP names addresses but carries no IP layer.
    add("arp", E / ARP(psrc=v4(99), pdst=v4(100)))
    # Teredo: an origin indication, then IPv6.
    add("teredo", E / IP(src=v4(101), dst=v4(102)) / UDP(sport=3544, dport=40003) / Raw(b"\x00\x00\x9c\x7b\xc0\x00\x02\x01") / IPv6(src=v6(103), dst=v6(104)) / UDP(sport=10034, dport=20034) / PAYLOAD)
    # Found by review: AH over IPv4; Ethernet pseudowires with and without a control word;
    # a tunnel's port above a well-known one (DNS claims it); VXLAN-GPE; a stack of IPv6
    # extension headers; an 802.3 length after a VLAN tag; an IPv4 length below its header's.
    add("v4-ah", E / IP(src=v4(119), dst=v4(120)) / AH(spi=2, nh=6, payloadlen=4, icv=b"\x00" * 12) / TCP(sport=10040, dport=20040))
    add("pw-no-cw", E / MPLS(label=400, s=1) / Ether(dst="00:1b:21:01:02:03", src="00:1b:21:04:05:06") / IP(src=v4(121), dst=v4(122)) / UDP(sport=10041, dport=20041) / PAYLOAD)
    add("pw-cw", E / MPLS(label=401, s=1) / Raw(b"\x00\x00\x00\x00") / Ether(dst="02:11:22:33:44:55", src="02:00:00:00:00:09") / IP(src=v4(123), dst=v4(124)) / TCP(sport=10042, dport=20042))
    inner = bytes(VXLAN(vni=3) / Ether() / IP(src=v4(125), dst=v4(126)) / UDP(sport=10043, dport=20043))
    add("vxlan-port-above-dns", E / IP(src=v4(127), dst=v4(128)) / UDP(sport=4789, dport=53) / Raw(inner))
    add("vxlan-gpe", E / IP(src=v4(129), dst=v4(130)) / UDP(sport=40005, dport=4790) / VXLAN(flags=0x0C, NextProtocol=1, vni=4) / IP(src=v4(131), dst=v4(132)) / TCP(sport=10044, dport=20044))
    stack = IPv6(src=v6(133), dst=v6(134))
    for _ in range(40):
        stack = stack / IPv6ExtHdrDestOpt()
    add("v6-40-ext", E / stack / TCP(sport=10045, dport=20045))
    llc = LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800) / IP(src=v4(135), dst=v4(136)) / UDP(sport=10046, dport=20046) / PAYLOAD
    add("vlan-8023", E / Dot1Q(vlan=11, type=len(bytes(llc))) / llc)
    # Second review: VLAN depth (tshark reads 20 nested tags, not 21); tunnels behind source
    # port 0 and ports without a claim; a tunnel's port that is higher than another tunnel's;
    # VXLAN-GPE carrying MPLS; a pseudowire behind a zero control word whose frame has a type
    # where a bare frame's would be; MPLS with a first nibble of 1 (PW-ACH, no Ethernet).
    for n in (20, 21):
        p = E
        for i in range(n):
            p = p / Dot1Q(vlan=i + 1)
        add(f"vlan-{n}", p / IP(src=v4(139 + n - 20), dst=v4(141)) / UDP(sport=10048, dport=20048) / PAYLOAD)
    for k, sport in enumerate((0, 600, 1000)):
        add(f"vxlan-from-{sport}", E / IP(src=v4(142 + k), dst=v4(145)) / UDP(sport=sport, dport=4789) / VXLAN(vni=5) / Ether() / IP(src=v4(146 + k), dst=v4(149)) / TCP(sport=10049, dport=20049))
    add("gpe-to-geneve", E / IP(src=v4(150), dst=v4(151)) / UDP(sport=4790, dport=6081) / VXLAN(flags=0x0C, NextProtocol=1, vni=6) / IP(src=v4(152), dst=v4(153)) / UDP(sport=10050, dport=20050) / PAYLOAD)
    add("gpe-mpls", E / IP(src=v4(154), dst=v4(155)) / UDP(sport=40006, dport=4790) / VXLAN(flags=0x0C, NextProtocol=5, vni=7) / MPLS(label=9, s=1) / IP(src=v4(156), dst=v4(157)) / TCP(sport=10051, dport=20051))
    add("pw-cw-typed-mac", E / MPLS(label=402, s=1) / Raw(b"\x00\x00\x00\x00") / Ether(dst="00:1b:21:0a:0b:0c", src="02:00:08:00:00:01") / IP(src=v4(158), dst=v4(159)) / UDP(sport=10052, dport=20052) / PAYLOAD)
    add("mpls-ach", E / MPLS(label=13, s=1) / Raw(b"\x10\x00\x00\x07") / Raw(bytes(Ether() / IP(src=v4(160), dst=v4(161)))))
    add("v4-short-length", E / IP(src=v4(137), dst=v4(138), len=12, proto=17) / Raw(bytes(UDP(sport=10047, dport=20047))))
    return out


def main():
    out_dir = sys.argv[1]
    ether = []
    for i, (_name, p) in enumerate(frames()):
        p.time = 1_700_000_000 + i
        ether.append(p)
    wrpcap(f"{out_dir}/ether.pcap", ether)
    # Linux cooked capture (SLL) of a VLAN-free GRE packet and a plain one.
    sll = [
        CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\x00\x00\x00\x00\x01\x00\x00", proto=0x0800)
        / IP(src=v4(105), dst=v4(106)) / GRE() / IP(src=v4(107), dst=v4(108)) / UDP(sport=10035, dport=20035) / PAYLOAD,
        CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\x00\x00\x00\x00\x01\x00\x00", proto=0x86DD)
        / IPv6(src=v6(109), dst=v6(110)) / TCP(sport=10036, dport=20036),
    ]
    for i, p in enumerate(sll):
        p.time = 1_700_001_000 + i
    wrpcap(f"{out_dir}/sll.pcap", sll, linktype=113)
    # Raw IP (LINKTYPE_RAW).
    raw = [
        IP(src=v4(111), dst=v4(112)) / UDP(sport=40004, dport=4789) / VXLAN(vni=1) / Ether() / IP(src=v4(113), dst=v4(114)) / TCP(sport=10037, dport=20037),
        IPv6(src=v6(115), dst=v6(116)) / UDP(sport=10038, dport=20038) / PAYLOAD,
    ]
    for i, p in enumerate(raw):
        p.time = 1_700_002_000 + i
    wrpcap(f"{out_dir}/raw.pcap", raw, linktype=101)


if __name__ == "__main__":
    main()
