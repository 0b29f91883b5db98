// Trawl on Azure: `azd up` provisions this (subscription scope: it creates the resource group),
// then deploys the app to the Function App tagged azd-service-name=api.
// Everything authenticates with the app's user-assigned managed identity: no storage key, no
// database password and no secret in any output.
targetScope = 'subscription'

@description('Required. Name of the azd environment; seeds resource names and tags.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Required. Region of every resource; must offer Flex Consumption.')
@minLength(1)
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Optional. Object id of the developer running azd (AZURE_PRINCIPAL_ID): gets data roles on storage and becomes a PostgreSQL Entra administrator when principalName is also set. Empty for none.')
param principalId string = ''

@description('Optional. User principal name of that developer (AZURE_PRINCIPAL_NAME, set by infra/hooks/preprovision.sh): the PostgreSQL role the post-provision hook signs in as.')
param principalName string = ''

@description('Optional. Kind of principal principalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Required. Email address that receives alerts and API Management notifications (TRAWL_ALERT_EMAIL).')
@minLength(3)
param alertEmail string

@description('Required. Accepted access-token audiences of the Trawl API app registration, e.g. its Application ID URI (TRAWL_API_AUDIENCE).')
@minLength(1)
param apiAudiences array

@description('Optional. Client application ids allowed through API Management; empty allows any client of the tenant.')
param apiClientApplicationIds array = []

@description('Optional. Entra tenant whose tokens the API accepts.')
param apiTenantId string = tenant().tenantId

@description('Optional. API Management tier: Developer (default) or a v2/classic tier supports the per-caller rate-limit-by-key; Consumption does not.')
@allowed([
  'Consumption'
  'Developer'
  'BasicV2'
  'StandardV2'
  'Basic'
  'Standard'
  'Premium'
])
param apiManagementSku string = 'Developer'

@description('Optional. Calls per caller (token oid) per minute through API Management.')
@minValue(1)
param apiRateLimitPerMinute int = 60

@description('Optional. Memory of each Function App instance in MB.')
@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Optional. Most instances the Function App scales out to.')
@minValue(40)
@maxValue(1000)
param functionMaximumInstanceCount int = 100

@description('Optional. PostgreSQL compute size.')
param postgresSkuName string = 'Standard_B1ms'

@description('Optional. PostgreSQL compute tier (zone-redundant HA needs GeneralPurpose or MemoryOptimized).')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'Burstable'

@description('Optional. PostgreSQL storage in GB.')
param postgresStorageSizeGB int = 32

@description('Optional. Days of PostgreSQL point-in-time restore.')
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 7

@description('Optional. Geo-redundant PostgreSQL backups (only settable at creation).')
param postgresGeoRedundantBackup bool = false

@description('Optional. Zone-redundant PostgreSQL high availability.')
param postgresZoneRedundantHa bool = false

@description('Optional. true: PostgreSQL has a public endpoint behind postgresFirewallRules; false: private access in a VNet the Function App integrates with.')
param postgresPublicAccess bool = true

@description('Optional. PostgreSQL firewall rules for public access. The default (0.0.0.0) admits Azure services only, which Flex Consumption needs because its outbound addresses are not fixed; Entra-only login is the real gate.')
param postgresFirewallRules array = [
  {
    name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
]

@description('Optional. Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

var functionAppName = '${abbrs.webSitesFunctions}trawl-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'
var postgresServerName = '${abbrs.dBforPostgreSQLFlexibleServers}trawl-${resourceToken}'
var apiManagementName = '${abbrs.apiManagementService}trawl-${resourceToken}'
var apiGatewayUrl = 'https://${apiManagementName}.azure-api.net'

// Names the app and the storage account must agree on.
var taskHubName = 'trawl'
var itemQueueName = 'scrape-items'
var rateLimitTableName = 'ratelimits'
var databaseName = 'trawl'

var developerIsDatabaseAdmin = !empty(principalId) && !empty(principalName)
var identityAdministrator = [
  {
    objectId: identity.outputs.principalId
    principalName: identity.outputs.name
    principalType: 'ServicePrincipal'
  }
]
var developerAdministrator = [
  {
    objectId: principalId
    principalName: principalName
    principalType: principalType
  }
]

// Every app setting the Function App gets (plus APPLICATIONINSIGHTS_CONNECTION_STRING, which
// modules/function-app.bicep reads itself). One line per setting; tests/infra checks that every
// setting shared/settings.py reads is here.
var appSettings = {
  // Functions host storage (Durable task hub, timers), identity-based.
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  // Trawl's own storage connection (item queue, rate-limit table), identity-based.
  TrawlStorage__queueServiceUri: storage.outputs.queueEndpoint
  TrawlStorage__tableServiceUri: storage.outputs.tableEndpoint
  TrawlStorage__credential: 'managedidentity'
  TrawlStorage__clientId: identity.outputs.clientId
  AZURE_CLIENT_ID: identity.outputs.clientId
  // Telemetry: Entra-authenticated (the component has local auth disabled).
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.outputs.clientId}'
  // Trawl.
  TRAWL_ENVIRONMENT: 'azure'
  TRAWL_PUBLIC_BASE_URL: apiGatewayUrl
  TRAWL_TASK_HUB: taskHubName
  TRAWL_QUEUE_NAME: itemQueueName
  TRAWL_RECONCILE_SCHEDULE: '0 */1 * * * *'
  TRAWL_RECONCILE_GRACE_SECONDS: '60'
  TRAWL_DATABASE_AUTH: 'entra'
  TRAWL_DATABASE_HOST: postgres.outputs.fqdn
  TRAWL_DATABASE_NAME: databaseName
  TRAWL_DATABASE_USER: identity.outputs.name
  TRAWL_DATABASE_POOL_SIZE: '10'
  TRAWL_MAX_URLS_PER_JOB: '1000'
  TRAWL_MAX_URL_LENGTH: '2048'
  TRAWL_MAX_BODY_BYTES: '1048576'
  TRAWL_DEFAULT_DEADLINE_SECONDS: '3600'
  TRAWL_MAX_DEADLINE_SECONDS: '86400'
  TRAWL_PROGRESS_TICK_SECONDS: '15'
  TRAWL_ENQUEUE_BATCH_SIZE: '250'
  TRAWL_FETCH_CONNECT_TIMEOUT: '5'
  TRAWL_FETCH_READ_TIMEOUT: '15'
  TRAWL_FETCH_TOTAL_TIMEOUT: '30'
  TRAWL_FETCH_MAX_BYTES: '5242880'
  TRAWL_FETCH_ALLOWED_NETWORKS: ''
  TRAWL_FETCH_ALLOWED_PORTS: '80,443'
  TRAWL_FETCH_MAX_ATTEMPTS: '5'
  TRAWL_RETRY_BASE_DELAY_SECONDS: '5'
  TRAWL_RETRY_MAX_DELAY_SECONDS: '300'
  TRAWL_API_THREADS: '8'
  TRAWL_AUTH_MODE: 'entra'
  TRAWL_AUTH_TENANT_IDS: apiTenantId
  TRAWL_AUTH_AUDIENCES: join(apiAudiences, ',')
  TRAWL_AUTH_ISSUER_VERSIONS: '1,2'
  TRAWL_AUTH_JWKS_URL: ''
  TRAWL_AUTH_JWKS_REFETCH_SECONDS: '300'
  TRAWL_RATE_TABLE: rateLimitTableName
  TRAWL_RATE_SUBMISSIONS_PER_MINUTE: '30'
  TRAWL_RATE_URLS_PER_DAY: '50000'
  TRAWL_RATE_RUNNING_JOBS: '10'
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}trawl-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}trawl-${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}trawl-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    queueNames: [
      itemQueueName
      '${itemQueueName}-poison'
    ]
    tableNames: [
      rateLimitTableName
    ]
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module roles 'modules/role-assignments.bicep' = {
  name: 'role-assignments'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    developerPrincipalId: principalId
    developerPrincipalType: principalType
  }
}

module network 'modules/network.bicep' = if (!postgresPublicAccess) {
  name: 'network'
  scope: rg
  params: {
    name: '${abbrs.networkVirtualNetworks}trawl-${resourceToken}'
    location: location
    tags: tags
    networkSecurityGroupPrefix: '${abbrs.networkNetworkSecurityGroups}trawl-${resourceToken}-'
    postgresPrivateDnsZoneName: '${postgresServerName}.private.postgres.database.azure.com'
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  scope: rg
  params: {
    name: postgresServerName
    location: location
    tags: tags
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    storageSizeGB: postgresStorageSizeGB
    backupRetentionDays: postgresBackupRetentionDays
    geoRedundantBackup: postgresGeoRedundantBackup
    zoneRedundantHa: postgresZoneRedundantHa
    publicAccess: postgresPublicAccess
    firewallRules: postgresFirewallRules
    delegatedSubnetId: postgresPublicAccess ? '' : network.outputs.postgresSubnetId
    privateDnsZoneId: postgresPublicAccess ? '' : network.outputs.postgresPrivateDnsZoneId
    administrators: developerIsDatabaseAdmin ? concat(identityAdministrator, developerAdministrator) : identityAdministrator
    databaseName: databaseName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    planName: '${abbrs.webServerFarms}trawl-${resourceToken}'
    name: functionAppName
    location: location
    tags: tags
    azdServiceName: 'api'
    identityResourceId: identity.outputs.resourceId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appSettings: appSettings
    instanceMemoryMB: functionInstanceMemoryMB
    maximumInstanceCount: functionMaximumInstanceCount
    virtualNetworkSubnetId: postgresPublicAccess ? '' : network.outputs.appSubnetId
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
  dependsOn: [
    roles
  ]
}

module apiManagement 'modules/api-management.bicep' = {
  name: 'api-management'
  scope: rg
  params: {
    name: apiManagementName
    location: location
    tags: tags
    skuName: apiManagementSku
    publisherEmail: alertEmail
    functionAppHostName: functionApp.outputs.defaultHostName
    tenantId: apiTenantId
    audiences: apiAudiences
    clientApplicationIds: apiClientApplicationIds
    rateLimitCalls: apiRateLimitPerMinute
    rateLimitRenewalPeriod: 60
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: 'trawl-${resourceToken}-'
    actionGroupName: '${abbrs.insightsActionGroups}trawl-${resourceToken}'
    alertEmail: alertEmail
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    postgresServerId: postgres.outputs.resourceId
  }
}

// Names and endpoints only: azd stores these in .azure/<env>/.env, and the hooks read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_POSTGRES_SERVER_NAME string = postgres.outputs.name
output AZURE_POSTGRES_HOST string = postgres.outputs.fqdn
output AZURE_POSTGRES_DATABASE string = postgres.outputs.databaseName
output AZURE_POSTGRES_PUBLIC_ACCESS bool = postgresPublicAccess
output AZURE_POSTGRES_DEVELOPER_ADMIN string = developerIsDatabaseAdmin ? principalName : ''
output AZURE_API_MANAGEMENT_NAME string = apiManagement.outputs.name
output TRAWL_API_GATEWAY_URL string = apiManagement.outputs.gatewayUrl
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_NAME string = monitoring.outputs.logAnalyticsName
