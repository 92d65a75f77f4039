#!/usr/bin/env python3
"""Generates the bundled sample: a small production VPC and a dev VPC, ~40 ESG rules, the API
responses a `tccli` export of them would hold (samples/export/), and a few thousand VPC flow-log
lines whose ACCEPT/REJECT agree with the rules (samples/flowlogs.txt).

The flow actions come from a first-match simulation written here independently of the Rust
engine, with a few deliberate exceptions that the audit function must recognise: REJECTs that no
ESG rule explains (the network ACL), ACCEPTs the snapshot says should be blocked (drift), replies,
NODATA/SKIPDATA records and a few malformed lines.

Deterministic: run it again and the files are byte-identical.
    python3 samples/generate.py
"""

import ipaddress
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
ACCOUNT = "1251762227"
T0 = 1763942400  # 2025-11-24T00:00:00Z

VPCS = [
    {"VpcId": "vpc-prod0001", "VpcName": "prod", "CidrBlock": "10.0.0.0/16",
     "AssistantCidrSet": [{"VpcId": "vpc-prod0001", "CidrBlock": "10.10.0.0/16", "AssistantType": 0}]},
    {"VpcId": "vpc-dev00001", "VpcName": "dev", "CidrBlock": "172.16.0.0/16", "AssistantCidrSet": []},
]
SUBNETS = [
    ("subnet-web00001", "vpc-prod0001", "web", "10.0.1.0/24"),
    ("subnet-app00001", "vpc-prod0001", "app", "10.0.2.0/24"),
    ("subnet-db000001", "vpc-prod0001", "db", "10.0.3.0/24"),
    ("subnet-ops00001", "vpc-prod0001", "ops", "10.10.1.0/24"),
    ("subnet-dev00001", "vpc-dev00001", "dev", "172.16.1.0/24"),
]
# (eni, subnet, instance, ip)
ENIS = (
    [(f"eni-web0000{i}", "subnet-web00001", f"ins-web0000{i}", f"10.0.1.{10 + i}") for i in range(5)]
    + [(f"eni-app0000{i}", "subnet-app00001", f"ins-app0000{i}", f"10.0.2.{10 + i}") for i in range(6)]
    + [(f"eni-db00000{i}", "subnet-db000001", f"ins-db00000{i}", f"10.0.3.{10 + i}") for i in range(3)]
    + [("eni-cache001", "subnet-db000001", "ins-cache01", "10.0.3.20"),
       ("eni-bastion1", "subnet-ops00001", "ins-bastion1", "10.10.1.10"),
       ("eni-monitor1", "subnet-ops00001", "ins-monitor1", "10.10.1.20")]
    + [(f"eni-dev0000{i}", "subnet-dev00001", f"ins-dev0000{i}", f"172.16.1.{10 + i}") for i in range(4)]
)
VPC_OF_SUBNET = {s[0]: s[1] for s in SUBNETS}
# What the console calls each instance (CVM's default name is 未命名, "unnamed").
def instance_name(ins):
    special = {"ins-cache01": "redis-主", "ins-bastion1": "bastion", "ins-monitor1": "prometheus", "ins-dev00003": "未命名"}
    if ins in special:
        return special[ins]
    tier, n = ins[4:].rstrip("0123456789"), int(ins[-1]) + 1
    return f"{tier}-{n:02d}"
ADDRESS_TEMPLATES = {
    "ipm-web00001": ("web tier", ["10.0.1.0/24"]),
    "ipm-db000001": ("mysql hosts", ["10.0.3.10", "10.0.3.11", "10.0.3.12"]),
    "ipm-cache001": ("redis hosts", ["10.0.3.20"]),
    "ipm-mon00001": ("monitoring", ["10.10.1.20"]),
}
ADDRESS_GROUPS = {"ipmg-data0001": ("data tier", ["ipm-db000001", "ipm-cache001"])}
SERVICE_TEMPLATES = {
    "ppm-dns00001": ("dns", ["udp:53", "tcp:53"]),
    "ppm-mon00001": ("exporters", ["tcp:9100", "tcp:9104", "tcp:9121"]),
}
SERVICE_GROUPS = {"ppmg-dns0001": ("dns group", ["ppm-dns00001"])}
TAG_PROD = '{"Key":"env","Value":"prod"}'
TAG_PROD_MEMBERS = [ip for (_, subnet, _, ip) in ENIS if subnet == "subnet-app00001"]

ANY = ("net", "0.0.0.0/0")
PROD = ("net", "10.0.0.0/16")
DEV = ("net", "172.16.0.0/16")

# (action, source, destination, protocol, port, service template, description, enabled)
NEW_RULES = [
    ("drop", ("net", "203.0.113.66"), ANY, "ANY", "-1/-1", "", "known scanner", True),
    ("accept", ("net", "10.10.1.10"), PROD, "TCP", "22", "", "bastion ssh to prod", True),
    ("drop", ANY, PROD, "TCP", "22", "", "block all other ssh to prod", True),
    ("accept", ANY, ("template", "ipm-web00001"), "TCP", "80,443", "", "public web", True),
    ("log", ANY, ("template", "ipm-web00001"), "TCP", "8080", "", "observe direct access to web 8080", True),
    ("drop", ANY, ("template", "ipm-web00001"), "TCP", "8080/8090", "", "block admin ports on web", True),
    ("accept", ("template", "ipm-web00001"), ("net", "10.0.2.0/24"), "TCP", "8080", "", "web to app", True),
    ("log", ANY, ("template", "ipmg-data0001"), "TCP", "3306,6379", "", "observe data-tier access", True),
    ("accept", ("net", "10.0.2.0/24"), ("template", "ipm-db000001"), "TCP", "3306", "", "app to mysql", True),
    ("accept", ("net", "10.0.2.0/24"), ("instance", "ins-cache01"), "TCP", "6379", "", "app to redis", True),
    ("drop", ANY, ("template", "ipmg-data0001"), "TCP", "3306,6379", "", "block other data-tier access", True),
    ("drop", ANY, ("template", "ipm-db000001"), "ICMP", "-1/-1", "", "no ping to databases", True),
    ("accept", ("net", "10.0.0.0/8"), ("net", "10.0.0.2"), "", "", "ppmg-dns0001", "dns", True),
    ("accept", ("template", "ipm-mon00001"), PROD, "", "", "ppm-mon00001", "prometheus scrape", True),
    ("drop", PROD, DEV, "ANY", "-1/-1", "", "prod must not reach dev", True),
    ("drop", DEV, PROD, "ANY", "-1/-1", "", "dev must not reach prod", True),
    ("log", ("tag", TAG_PROD), ANY, "TCP", "25", "", "observe smtp egress from prod", True),
    ("drop", ("resourcegroup", "cfwrg-legacy01"), ANY, "TCP", "445", "", "legacy group: no smb", True),
    ("accept", PROD, ("net", "192.168.100.0/24"), "TCP", "443,8443", "", "prod to on-prem api", True),
    ("drop", ANY, PROD, "TCP", "3389", "", "no rdp", True),
    ("drop", ANY, PROD, "TCP", "23,135,139,445", "", "legacy protocols", True),
    ("accept", ("net", "192.168.100.0/24"), ("net", "10.0.1.0/24"), "TCP", "443", "", "on-prem to web", True),
    ("log", ANY, ("net", "10.0.2.0/24"), "UDP", "-1/-1", "", "observe udp to app", True),
    ("drop", ANY, ("dnsparse", "exfil.example.com"), "TCP", "443", "", "block exfil domain", True),
    ("accept", PROD, ANY, "TCP", "443", "", "prod https egress", True),
    ("drop", PROD, ANY, "TCP", "80", "", "no plain http egress", True),
    ("accept", DEV, DEV, "ANY", "-1/-1", "", "dev internal", True),
    ("drop", ANY, PROD, "ANY", "-1/-1", "", "emergency lockdown (kept disabled)", False),
    ("drop", ANY, ("template", "ipm-web00001"), "UDP", "-1/-1", "", "no udp to web", True),
    ("accept", ("net", "10.0.2.0/24"), ("net", "10.0.2.0/24"), "TCP", "7000/7100", "", "app cluster gossip", True),
    ("drop", ("net", "10.0.1.0/24"), ("net", "10.0.1.0/24"), "TCP", "1/65535", "", "web hosts must not talk to each other", True),
    ("accept", ("net", "10.10.1.0/24"), PROD, "ICMP", "-1/-1", "", "ops ping", True),
    ("drop", ANY, PROD, "ICMP", "-1/-1", "", "no other ping", True),
    ("log", PROD, PROD, "TCP", "5000/5999", "", "observe dev ports inside prod", True),
    ("accept", ANY, ("net", "10.0.1.0/24"), "TCP", "8443", "", "web admin tls", True),
    ("accept", ("net", "10.0.2.0/24"), ("net", "10.0.3.0/24"), "TCP", "5432", "", "app to postgres (not yet published)", False),
]
# Old-ESG rules (evaluated after every new rule).
OLD_RULES = [
    ("drop", ANY, ("net", "10.0.3.0/24"), "TCP", "-1/-1", "old: database subnet closed"),
    ("accept", PROD, ("net", "10.0.3.0/24"), "TCP", "5432", "old: postgres from prod"),
    ("drop", ANY, ("net", "10.0.2.0/24"), "TCP", "9000/9999", "old: app admin ports"),
]
TYPE_CODES = {"net": 0, "instance": 3, "template": 7, "tag": 8, "resourcegroup": 100, "dnsparse": 20}


def net_set(kind, content):
    """The addresses an endpoint resolves to, or None when the export cannot resolve it."""
    if kind == "net":
        return [ipaddress.ip_network(content, strict=False)]
    if kind == "template":
        ids = ADDRESS_GROUPS[content][1] if content in ADDRESS_GROUPS else [content]
        return [ipaddress.ip_network(a) for i in ids for a in ADDRESS_TEMPLATES[i][1]]
    if kind == "instance":
        return [ipaddress.ip_network(ip) for (_, _, ins, ip) in ENIS if ins == content]
    if kind == "tag" and content == TAG_PROD:
        return [ipaddress.ip_network(ip) for ip in TAG_PROD_MEMBERS]
    return None


def services(protocol, port, template):
    if template:
        ids = SERVICE_GROUPS[template][1] if template in SERVICE_GROUPS else [template]
        out = []
        for i in ids:
            for entry in SERVICE_TEMPLATES[i][1]:
                proto, ports = entry.split(":")
                out.append((proto.upper(), ports))
        return out
    return [(protocol, port)]


def port_match(spec, port):
    if spec in ("-1/-1", "all", ""):
        return True
    for item in spec.split(","):
        if "/" in item or "-" in item:
            lo, hi = item.replace("-", "/").split("/")
            if int(lo) <= port <= int(hi):
                return True
        elif int(item) == port:
            return True
    return False


PROTO_NUMBERS = {"TCP": 6, "UDP": 17, "ICMP": 1}


def rule_matches(rule, src, dst, proto, port):
    action, s, d, protocol, ports, template, _desc, enabled = rule
    if not enabled:
        return False
    sset, dset = net_set(*s), net_set(*d)
    if sset is None or dset is None:
        return False
    if not any(ipaddress.ip_address(src) in n for n in sset) or not any(ipaddress.ip_address(dst) in n for n in dset):
        return False
    for p, spec in services(protocol, ports, template):
        if p == "ANY":
            return True
        if PROTO_NUMBERS[p] == proto and (proto not in (6, 17) or port_match(spec, port)):
            return True
    return False


def decide(src, dst, proto, port):
    """First terminal match over new then old rules: 'accept', 'drop' or None."""
    rules = NEW_RULES + [(a, s, d, p, o, "", desc, True) for (a, s, d, p, o, desc) in OLD_RULES]
    for rule in rules:
        if rule[0] != "log" and rule_matches(rule, src, dst, proto, port):
            return rule[0]
    return None


ENI_BY_IP = {ip: eni for (eni, _, _, ip) in ENIS}


def export():
    out = os.path.join(HERE, "export")
    os.makedirs(out, exist_ok=True)

    def write(name, body):
        with open(os.path.join(out, name), "w") as f:
            json.dump({"Response": body}, f, indent=1, ensure_ascii=False)
            f.write("\n")

    rules = []
    for i, (action, s, d, protocol, port, template, desc, enabled) in enumerate(NEW_RULES):
        rules.append({"Id": str(7000 + i), "OrderIndex": str(i + 1), "RuleAction": action,
                      "SourceType": s[0], "SourceContent": s[1], "DestType": d[0], "DestContent": d[1],
                      "Protocol": protocol, "Port": port, "ServiceTemplateId": template, "Description": desc,
                      "Enable": "true" if enabled else "false", "Uid": "", "Scope": "SG"})
    total = str(len(rules))
    write("DescribeEnterpriseSecurityGroupRule-page1.json", {"PageNo": "1", "PageSize": "20", "Rules": rules[:20], "TotalCount": total, "RequestId": "sample-0001"})
    write("DescribeEnterpriseSecurityGroupRule-page2.json", {"PageNo": "2", "PageSize": "20", "Rules": rules[20:], "TotalCount": total, "RequestId": "sample-0002"})
    strategy = {"accept": 2, "drop": 1, "log": 0}
    listed = []
    for i, (action, s, d, protocol, port, template, desc, enabled) in enumerate(NEW_RULES):
        sset = net_set(*s) if s[0] not in ("net", "template") else None
        dset = net_set(*d) if d[0] not in ("net", "template") else None
        listed.append({"OrderIndex": i + 1, "RuleUuid": 7000 + i, "Uuid": f"cfwrule-{7000 + i}", "Id": 7000 + i,
                       "SourceId": s[1], "SourceType": TYPE_CODES[s[0]], "TargetId": d[1], "TargetType": TYPE_CODES[d[0]],
                       "Protocol": protocol, "Port": port, "Strategy": strategy[action], "Status": 1 if enabled else 0,
                       "Detail": desc, "ServiceTemplateId": template, "IsNew": 0, "IsDelay": 0, "Region": "ap-guangzhou",
                       "SouPrivateIp": ",".join(str(n.network_address) for n in sset) if sset else "",
                       "PrivateIp": ",".join(str(n.network_address) for n in dset) if dset else "",
                       "SouCidr": "", "Cidr": "", "RulePartition": 2, "Scope": "SG"})
    write("DescribeEnterpriseSecurityGroupRuleList.json", {"Total": len(listed), "AllTotal": len(listed), "Enable": 1, "Data": listed, "RequestId": "sample-0003"})
    old = [{"OrderIndex": i + 1, "Id": 9000 + i, "Uuid": f"old-{9000 + i}", "SourceId": s[1], "SourceType": TYPE_CODES[s[0]],
            "TargetId": d[1], "TargetType": TYPE_CODES[d[0]], "Protocol": protocol, "Port": port, "Strategy": str(strategy[action]),
            "Detail": desc, "Direction": 1, "BothWay": 0, "Status": 1, "IsNew": 0}
           for i, (action, s, d, protocol, port, desc) in enumerate(OLD_RULES)]
    # "Area" is the region the request named: the answer does not carry it, so esgflow's live
    # builder (and this export) adds it.
    write("DescribeSecurityGroupList.json", {"Data": old, "Total": len(old), "AllTotal": len(old), "Enable": 1, "Area": "ap-shanghai", "RequestId": "sample-0004"})
    write("DescribeAddressTemplates.json", {"TotalCount": len(ADDRESS_TEMPLATES), "AddressTemplateSet": [
        {"AddressTemplateId": k, "AddressTemplateName": v[0], "AddressSet": v[1], "AddressExtraSet": [{"Address": a, "Description": ""} for a in v[1]],
         "CreatedTime": "2025-11-01 10:00:00", "TagSet": []} for k, v in ADDRESS_TEMPLATES.items()], "RequestId": "sample-0005"})
    write("DescribeAddressTemplateGroups.json", {"TotalCount": len(ADDRESS_GROUPS), "AddressTemplateGroupSet": [
        {"AddressTemplateGroupId": k, "AddressTemplateGroupName": v[0], "AddressTemplateIdSet": v[1],
         "AddressTemplateSet": [{"AddressTemplateId": i} for i in v[1]], "CreatedTime": "2025-11-01 10:00:00"} for k, v in ADDRESS_GROUPS.items()], "RequestId": "sample-0006"})
    write("DescribeServiceTemplates.json", {"TotalCount": len(SERVICE_TEMPLATES), "ServiceTemplateSet": [
        {"ServiceTemplateId": k, "ServiceTemplateName": v[0], "ServiceSet": v[1], "ServiceExtraSet": [{"Service": s, "Description": ""} for s in v[1]],
         "CreatedTime": "2025-11-01 10:00:00"} for k, v in SERVICE_TEMPLATES.items()], "RequestId": "sample-0007"})
    write("DescribeServiceTemplateGroups.json", {"TotalCount": len(SERVICE_GROUPS), "ServiceTemplateGroupSet": [
        {"ServiceTemplateGroupId": k, "ServiceTemplateGroupName": v[0], "ServiceTemplateIdSet": v[1], "CreatedTime": "2025-11-01 10:00:00"}
        for k, v in SERVICE_GROUPS.items()], "RequestId": "sample-0008"})
    write("DescribeVpcs.json", {"TotalCount": len(VPCS), "VpcSet": VPCS, "RequestId": "sample-0009"})
    write("DescribeSubnets.json", {"TotalCount": str(len(SUBNETS)), "SubnetSet": [
        {"VpcId": v, "SubnetId": s, "SubnetName": n, "CidrBlock": c, "Ipv6CidrBlock": "", "Zone": "ap-guangzhou-3", "IsDefault": False}
        for (s, v, n, c) in SUBNETS], "RequestId": "sample-0010"})
    write("DescribeNetworkInterfaces.json", {"TotalCount": len(ENIS), "NetworkInterfaceSet": [
        {"NetworkInterfaceId": eni, "NetworkInterfaceName": f"{instance_name(ins)}-eth0", "NetworkInterfaceDescription": "",
         "VpcId": VPC_OF_SUBNET[subnet], "SubnetId": subnet, "GroupSet": ["sg-esg00001"],
         "PrivateIpAddressSet": [{"PrivateIpAddress": ip, "Primary": True, "PublicIpAddress": "", "State": "AVAILABLE"}],
         "Ipv6AddressSet": [], "Attachment": {"InstanceId": ins, "DeviceIndex": 0, "InstanceAccountId": ACCOUNT}, "Zone": "ap-guangzhou-3",
         "MacAddress": "20:90:6f:00:00:00", "State": "AVAILABLE", "Primary": True}
        for (eni, subnet, ins, ip) in ENIS], "RequestId": "sample-0011"})
    # The members esgflow reads, in the shape of the official DescribeInstances example (tccli
    # cvm/v20170312/examples.json), with a few of the others beside them.
    write("DescribeInstances.json", {"TotalCount": len(ENIS), "InstanceSet": [
        {"InstanceId": ins, "InstanceName": instance_name(ins), "InstanceState": "RUNNING", "InstanceType": "S5.MEDIUM4",
         "Placement": {"Zone": "ap-guangzhou-3", "ProjectId": 0}, "PrivateIpAddresses": [ip], "PublicIpAddresses": [],
         "VirtualPrivateCloud": {"VpcId": VPC_OF_SUBNET[subnet], "SubnetId": subnet, "AsVpcGateway": False,
                                 "PrivateIpAddresses": [ip], "Ipv6AddressCount": 0},
         "SecurityGroupIds": ["sg-esg00001"], "CreatedTime": "2025-11-01T02:00:00Z", "Tags": []}
        for (eni, subnet, ins, ip) in ENIS], "RequestId": "sample-0012"})


def flows(rng):
    ips = lambda prefix: [ip for (_, _, _, ip) in ENIS if ip.startswith(prefix)]
    web, app, db, dev = ips("10.0.1."), ips("10.0.2."), ips("10.0.3.1"), ips("172.16.1.")
    cache, bastion, monitor = "10.0.3.20", "10.10.1.10", "10.10.1.20"
    internet = [f"203.0.113.{i}" for i in range(1, 60)] + [f"198.51.100.{i}" for i in range(1, 40)]
    onprem = [f"192.168.100.{i}" for i in range(1, 20)]
    saas = ["52.80.1.10", "52.80.1.11", "140.205.60.46"]
    # (weight, generator of (src, dst, proto, port), note)
    kinds = [
        (30, lambda: (rng.choice(internet), rng.choice(web), 6, rng.choice([80, 443, 443])), None),
        (4, lambda: (rng.choice(internet), rng.choice(web), 6, 8080), None),
        (3, lambda: (rng.choice(internet), rng.choice(web), 6, rng.choice([22, 3389, 8081, 23])), None),
        (3, lambda: ("203.0.113.66", rng.choice(web + app), 6, rng.choice([22, 80, 443, 3306])), None),
        (12, lambda: (rng.choice(web), rng.choice(app), 6, 8080), None),
        (3, lambda: (rng.choice(web), rng.choice(db), 6, 3306), None),
        (10, lambda: (rng.choice(app), rng.choice(db), 6, 3306), None),
        (6, lambda: (rng.choice(app), cache, 6, 6379), None),
        (2, lambda: (rng.choice(web), cache, 6, 6379), None),
        (3, lambda: (bastion, rng.choice(web + app + db), 6, 22), None),
        (2, lambda: (rng.choice(app), rng.choice(db), 6, 22), None),
        (8, lambda: (rng.choice(web + app + db), "10.0.0.2", 17, 53), None),
        (4, lambda: (monitor, rng.choice(web + app + db), 6, rng.choice([9100, 9104, 9121])), None),
        (3, lambda: (rng.choice(app + web), rng.choice(dev), 6, rng.choice([22, 8080, 5432])), None),
        (3, lambda: (rng.choice(dev), rng.choice(app + db), 6, rng.choice([3306, 8080])), None),
        (4, lambda: (rng.choice(dev), rng.choice(dev), 6, rng.choice([22, 8080, 9000])), None),
        (3, lambda: (rng.choice(app), rng.choice(saas), 6, 25), None),
        (4, lambda: (rng.choice(app), rng.choice(onprem), 6, rng.choice([443, 8443])), None),
        (6, lambda: (rng.choice(app + web), rng.choice(saas), 6, 443), None),
        (2, lambda: (rng.choice(app + web), rng.choice(saas), 6, 80), None),
        (3, lambda: (rng.choice(onprem), rng.choice(web), 6, 443), None),
        (2, lambda: (rng.choice(internet), rng.choice(app), 17, rng.choice([161, 5060])), None),
        (2, lambda: (rng.choice(web), rng.choice(web), 6, rng.choice([22, 8080, 6379])), None),
        (2, lambda: (rng.choice(app), rng.choice(app), 6, rng.choice([7000, 7050])), None),
        (2, lambda: (bastion, rng.choice(web + db), 1, None), None),
        (2, lambda: (rng.choice(internet), rng.choice(db), 1, None), None),
        (2, lambda: (rng.choice(app), rng.choice(app + db), 6, rng.choice([5000, 5601])), None),
        (2, lambda: (rng.choice(dev), rng.choice(onprem), 6, 443), "acl"),
        (2, lambda: (rng.choice(app), rng.choice(db), 6, 5432), "drift"),
    ]
    total = sum(k[0] for k in kinds)
    lines = []
    window = 0
    while len(lines) < 3000:
        window += 1
        start = T0 + 60 * (window % 30)
        end = start + 60
        roll = rng.randrange(total)
        for weight, make, note in kinds:
            if roll < weight:
                break
            roll -= weight
        src, dst, proto, port = make()
        decision = decide(src, dst, proto, port or 0)
        if note == "acl":
            action = "REJECT"
        elif note == "drift":
            action = "ACCEPT"
        else:
            action = "REJECT" if decision == "drop" else "ACCEPT"
        sport = rng.randrange(32768, 61000) if proto in (6, 17) else rng.randrange(1, 4000)
        # ICMP: dstport packs type (bits 0-7) and code (bits 8-15); 8 is an echo request.
        dport = port if proto in (6, 17) else 8
        packets = rng.randrange(1, 40)
        size = packets * rng.randrange(60, 1400)
        record = lambda eni, s, d, sp, dp, a: f"2 {ACCOUNT} {eni} {s} {d} {sp} {dp} {proto} {packets} {size} {start} {end} {a} OK"
        if src in ENI_BY_IP:
            lines.append(record(ENI_BY_IP[src], src, dst, sport, dport, action))
        if dst in ENI_BY_IP and (action == "ACCEPT" or src not in ENI_BY_IP):
            lines.append(record(ENI_BY_IP[dst], src, dst, sport, dport, action))
        # Replies of allowed TCP connections, seen on the server's ENI.
        if action == "ACCEPT" and proto == 6 and dst in ENI_BY_IP and rng.random() < 0.5:
            lines.append(record(ENI_BY_IP[dst], dst, src, port, sport, "ACCEPT"))
    for eni in ["eni-dev00003", "eni-web00004"]:
        lines.append(f"V1 {ACCOUNT} {eni} - - - - - - - {T0} {T0 + 60} - NODATA")
    lines.append(f"V1 {ACCOUNT} eni-app00005 - - - - - - - {T0 + 60} {T0 + 120} - SKIPDATA")
    lines.append(f"2 {ACCOUNT} eni-app00001 10.0.2.11 10.0.3.999 41000 3306 6 3 180 {T0} {T0 + 60} ACCEPT OK")
    lines.append(f"2 {ACCOUNT} eni-app00001 10.0.2.11 10.0.3.10 41000 3306 6 3 180 {T0}")
    return lines


def main():
    rng = random.Random(20251124)
    export()
    lines = flows(rng)
    with open(os.path.join(HERE, "flowlogs.txt"), "w") as f:
        f.write("# Sample VPC flow logs for esgflow (generated by samples/generate.py; see README).\n")
        f.write("# version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n")
        for line in lines:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
