"""`microagent sbom`: the installed packages as a CycloneDX document or JSON lines."""
import json
import os

from host_sim.cli import UsageError, write_output
from host_sim.collectors import rootfs, sbom, sysinfo


def register(subparsers):
    parser = subparsers.add_parser(
        "sbom", help="list installed packages (dpkg/opkg) as CycloneDX or JSON lines",
        description="Reads the dpkg or opkg status database under --root and writes a software "
                    "bill of materials.")
    parser.add_argument("--root", default="/", help="file system root to read (default /)")
    parser.add_argument("--format", choices=("cyclonedx", "json"), default="cyclonedx",
                        help="cyclonedx: a CycloneDX 1.6 JSON document (default); json: one "
                             "SBoM payload item per line")
    parser.add_argument("--output", default="-", help="file to write (default - for stdout)")
    parser.set_defaults(run=run)


def run(args):
    if not os.path.isdir(args.root):
        raise UsageError("--root %s is not a directory" % args.root)
    databases = [sbom.DPKG_STATUS] + list(sbom.OPKG_STATUS)
    if not any(os.path.exists(rootfs.path(args.root, name)) for name in databases):
        raise UsageError("no package database under %s (looked for %s)"
                         % (args.root, ", ".join(databases)))
    packages = sbom.installed_packages(args.root)
    if args.format == "json":
        text = "".join(json.dumps(p.item()) + "\n" for p in packages)
    else:
        text = cyclonedx_document(packages, sysinfo.read_os_release(args.root))
    write_output(args.output, text)
    return 0


def cyclonedx_document(packages, os_release):
    """A CycloneDX 1.6 JSON document: the operating system as the described component, one
    library component per package, with a deb purl (opkg packages: a generic purl)."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.contact import OrganizationalEntity
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    distro = os_release.get("ID", "linux")
    bom = Bom()
    system = Component(name=os_release.get("NAME", distro), version=os_release.get("VERSION_ID"),
                       type=ComponentType.OPERATING_SYSTEM, bom_ref="os")
    bom.metadata.component = system
    for p in packages:
        qualifiers = {"arch": p.architecture} if p.architecture else None
        if p.manager == "dpkg":
            purl = PackageURL("deb", distro, p.name, p.version or None, qualifiers)
        else:
            purl = PackageURL("generic", None, p.name, p.version or None, qualifiers)
        supplier = p.vendor.split("<", 1)[0].strip() if p.vendor else ""
        bom.components.add(Component(
            name=p.name, version=p.version or None, type=ComponentType.LIBRARY,
            supplier=OrganizationalEntity(name=supplier) if supplier else None,
            purl=purl, bom_ref=purl.to_string()))
    bom.register_dependency(system, bom.components)   # the system contains every package
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"
