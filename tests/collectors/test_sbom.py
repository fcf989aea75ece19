import json
import subprocess

from collector_fixtures import fixture_path
from host_sim.cli import main
from host_sim.collectors import sbom


def test_dpkg_status_only_fully_installed_packages():
    items = sbom.collect(fixture_path("dpkg_tree"))
    assert items == [
        {"name": "libc6", "version": "2.36-9+deb12u10",
         "vendor": "GNU Libc Maintainers <debian-glibc@lists.debian.org>"},
        {"name": "openssl", "version": "3.0.17-1~deb12u2",
         "vendor": "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>"},
        {"name": "avahi-daemon", "version": "0.8-10+deb12u1",
         "vendor": "Utopia Maintenance Team <pkg-utopia-maintainers@lists.alioth.debian.org>"},
        {"name": "no-maintainer", "version": "0.1", "vendor": ""},
    ]


def test_opkg_status():
    packages = sbom.installed_packages(fixture_path("opkg_tree"))
    assert [(p.name, p.version, p.manager) for p in packages] == [
        ("busybox", "1.36.1-1", "opkg"), ("dropbear", "2022.83-1", "opkg")]


def test_no_database_gives_nothing(tmp_path):
    assert sbom.collect(str(tmp_path)) == []


def dpkg_installed_count():
    statuses = subprocess.run(["dpkg-query", "-W", "-f=${Status}\n"], capture_output=True,
                              text=True, check=True).stdout.splitlines()
    return sum(1 for s in statuses if s == "install ok installed")


def test_live_count_matches_dpkg_query():
    items = sbom.collect("/")
    assert len(items) == dpkg_installed_count() > 100
    dpkg = [i for i in items if i["name"] == "dpkg"]
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "dpkg"], capture_output=True,
                             text=True, check=True).stdout
    assert dpkg and dpkg[0]["version"] == version


def test_command_writes_valid_cyclonedx(tmp_path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    output = tmp_path / "bom.json"
    assert main(["sbom", "--output", str(output)]) == 0
    text = output.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    assert document["bomFormat"] == "CycloneDX"
    assert len(document["components"]) == dpkg_installed_count()
    libc = [c for c in document["components"] if c["name"] == "libc6"]
    assert libc and libc[0]["purl"].startswith("pkg:deb/debian/libc6@")
    assert libc[0]["supplier"]["name"] == "GNU Libc Maintainers"


def test_command_json_lines_for_a_fixture_root(capsys):
    assert main(["sbom", "--root", fixture_path("opkg_tree"), "--format", "json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"name": "busybox", "version": "1.36.1-1", "vendor": ""},
        {"name": "dropbear", "version": "2022.83-1", "vendor": ""}]


def test_command_errors_are_one_line(tmp_path, capsys):
    assert main(["sbom", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no package database under %s" % tmp_path in err
    assert main(["sbom", "--root", fixture_path("dpkg_tree"), "--output",
                 str(tmp_path / "missing-dir" / "bom.json")]) == 2
    assert "cannot write --output" in capsys.readouterr().err
