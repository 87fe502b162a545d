# A ScaleEngine API client as Ruby users write it: rest-client posting multipart form data,
# JSON.generate (no "\/" escapes), the signature appended as the last member. rest-client
# raises on a 4xx answer, so the failure branch is reached only with HTTP 200.
#
#   ruby scaleengine.rb URL API_KEY SECRET CDN COMMAND [FIELD=VALUE ...]
require "base64"
require "json"
require "openssl"
require "rest-client"

url, api_key, secret, cdn, command, *fields = ARGV
request = { "command" => command, "api_key" => api_key, "timestamp" => Time.now.to_i,
            "cdn" => cdn.to_i }
fields.each do |field|
  name, value = field.split("=", 2)
  request[name] = name == "id" ? value.to_i : value
end
signed_text = JSON.generate(request)
request["signature"] = Base64.strict_encode64(
  OpenSSL::HMAC.digest("SHA256", secret, signed_text))
begin
  response = RestClient.post(url, { json: JSON.generate(request), multipart: true })
rescue RestClient::ExceptionWithResponse => error
  puts "EXCEPTION #{error.class}"
  exit 0
end
answer = JSON.parse(response.body)
if answer["status"] == "failure"
  puts "FAILURE #{answer['code']}: #{answer['message']}"
else
  puts "SUCCESS #{JSON.generate(answer['data'])}"
end
