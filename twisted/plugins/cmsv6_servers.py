from twisted.application.service import ServiceMaker

gateway = ServiceMaker("cmsv6 gateway", "cmsv6.plugins.gateway.tap", "JT/T 808 gateway: where devices live", "gateway")
login = ServiceMaker("cmsv6 login", "cmsv6.plugins.login.tap", "login server: directory, device assignment, hot standby", "login")
media = ServiceMaker("cmsv6 media", "cmsv6.plugins.media.tap", "media server: JT/T 1078 in, WS-FLV and HTTP-FLV out", "media")
