from twisted.application.service import ServiceMaker

gateway = ServiceMaker("cmsv6 gateway", "cmsv6.gateway.tap", "JT/T 808 gateway: where devices live", "gateway")
